"""The Redis token buckets (realm_web/server/ratelimit_redis.py) on a real redis-server: the same semantics as the
in-process RateLimiter, atomic across limiter instances (replicas)."""
from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest

from conftest import missing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "cluster"))
import cluster as cl  # noqa: E402

from realm_web.server.ratelimit import Limits, RateLimited  # noqa: E402


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if not shutil.which("redis-server"):
        missing("redis-server is not installed (bash scripts/setup.sh installs it)")
    r = cl.Redis(tmp_path_factory.mktemp("redis"))
    yield r.url
    r.stop()


def _limiter(url):
    from realm_web.server.ratelimit_redis import RedisRateLimiter
    return RedisRateLimiter(url)


def test_token_bucket_reserves_and_gives_back(redis_url):
    a, b = _limiter(redis_url), _limiter(redis_url)
    res = a.acquire("tenant:tok", Limits(None, 100), 60)
    assert res.tokens == 60
    with pytest.raises(RateLimited) as e:           # 40 left on the shared bucket, wherever asked
        b.acquire("tenant:tok", Limits(None, 100), 60)
    assert e.value.kind == "tokens" and e.value.limit == 100 and 11 < e.value.retry_after <= 12
    res.settle(10)                                  # 50 unused tokens go back
    assert b.acquire("tenant:tok", Limits(None, 100), 60).tokens == 60
    # max_tokens above the bucket's size reserves the whole bucket (as the in-process limiter does)
    assert a.acquire("tenant:tok2", Limits(None, 10), 10_000).tokens == 10
    with pytest.raises(RateLimited):
        a.acquire("tenant:tok2", Limits(None, 10), 1)


def test_request_bucket_is_atomic_across_instances(redis_url):
    limiters = [_limiter(redis_url) for _ in range(2)]
    admitted, refused = [], []

    def hit(i):
        try:
            limiters[i % 2].acquire("tenant:race", Limits(10, None), 1)
            admitted.append(i)
        except RateLimited as e:
            refused.append(e.kind)
    ts = [threading.Thread(target=hit, args=(i,)) for i in range(25)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(admitted) == 10 and refused == ["requests"] * 15


def test_both_buckets_or_neither(redis_url):
    lim = _limiter(redis_url)
    lim.acquire("tenant:both", Limits(5, 50), 50)            # the token bucket is now empty
    with pytest.raises(RateLimited) as e:
        lim.acquire("tenant:both", Limits(5, 50), 10)
    assert e.value.kind == "tokens"
    import redis
    r = redis.Redis.from_url(redis_url)
    level = float(r.hget("realm:rl:tenant:both:requests", "level"))
    assert 3.99 < level < 4.1                                # the refused request took no request either


def test_unlimited_touches_nothing(redis_url):
    import redis
    lim = _limiter(redis_url)
    lim.acquire("tenant:free", Limits(None, None), 1000).settle(3)
    lim.acquire("tenant:free0", Limits(0, 0), 1000)
    assert redis.Redis.from_url(redis_url).keys("realm:rl:tenant:free*") == []
