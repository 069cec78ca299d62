"""Two `realm serve` replicas on one PostgreSQL and one Redis behind HAProxy (examples/cluster/cluster.py):
real servers, started on temporary folders and free ports; the model is a tiny synthetic LLaMA."""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import missing
from server_helpers import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "cluster"))
import cluster as cl  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PRICES = {"tiny": {"prompt": 1.0, "cached": 0.5, "completion": 2.0}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, synthetic_model):
    for exe in ("haproxy", "redis-server", str(cl.PG_BIN / "initdb")):
        if not shutil.which(exe):
            missing(f"{exe} is not installed (bash scripts/setup.sh installs postgresql-15 redis-server haproxy)")
    try:
        import psycopg, redis  # noqa: F401
    except ImportError as e:
        missing(f"{e} (pip install -e '.[test]' installs psycopg and redis)")
    model = synthetic_model(n_layer=1, n_embd=64, n_ff=128, n_head=2, n_head_kv=1, seed=7)
    root = tmp_path_factory.mktemp("cluster")
    (root / "prices.json").write_text(json.dumps(PRICES))
    c = cl.Cluster(root, replicas=2, serve_args=["--model", f"{model}:tiny", "--threads", "1", "--max-sessions", "4",
                                                 "--prices", str(root / "prices.json")])
    yield c
    c.stop()


def _key(c, *args) -> str:
    r = c.realm("api-key", "generate", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _complete(url: str, key: str, n: int = 4):
    return _client(url, key).completions.create(model="tiny", prompt="Hello there", max_tokens=n, temperature=0)


def test_rpm_limit_holds_across_replicas(cluster):
    key = _key(cluster, "--tenant", "rpm-t", "--rpm", "3")
    r0, r1 = cluster.replicas
    for url in (r0.url, r1.url, cluster.lb.url):      # 3 requests, spread over both replicas
        assert _complete(url, key).choices[0].finish_reason == "length"
    for url in (r0.url, r1.url, cluster.lb.url):      # the 4th within the minute: refused wherever it lands
        with pytest.raises(openai.RateLimitError) as e:
            _complete(url, key)
        retry = int(e.value.response.headers["retry-after"])
        assert 1 <= retry <= 60
        assert "rpm-t" in e.value.message and "3 requests per minute" in e.value.message


def test_disable_on_one_applies_on_all(cluster):
    key = _key(cluster, "--tenant", "dis-t")
    kid = key.split("-")[2]
    for r in cluster.replicas:
        assert _complete(r.url, key).usage.completion_tokens == 4
    assert cluster.realm("api-key", "disable", kid).returncode == 0
    for url in [r.url for r in cluster.replicas] + [cluster.lb.url]:
        with pytest.raises(openai.AuthenticationError):
            _complete(url, key)
    assert cluster.realm("api-key", "enable", kid).returncode == 0
    assert _complete(cluster.lb.url, key).usage.completion_tokens == 4


def test_sse_and_websocket_through_the_balancer(cluster):
    key = _key(cluster, "--tenant", "ws-t")
    chunks = list(_client(cluster.lb.url, key).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 8
    from websockets.sync.client import connect
    with connect(cluster.lb.url.replace("http", "ws") + f"/v1/stream?api_key={key}") as ws:
        ws.send(json.dumps({"id": "a", "endpoint": "completions",
                            "body": {"model": "tiny", "prompt": "Hi", "max_tokens": 5}}))
        kinds = []
        while True:
            m = json.loads(ws.recv(timeout=60))
            kinds.append(m.get("type"))
            if m.get("type") in ("done", "error"):
                break
    assert kinds[-1] == "done", kinds


def test_usage_and_cost_per_tenant_key_and_model(cluster):
    key = _key(cluster, "--tenant", "use-t")
    admin = _key(cluster, "--admin")
    for r in cluster.replicas:
        _complete(r.url, key, n=6)
    rows = json.loads(cluster.realm("usage", "--tenant", "use-t", "--json", "--prices",
                                    str(cluster.root / "prices.json")).stdout)
    assert len(rows) == 1 and rows[0]["requests"] == 2 and rows[0]["generated_tokens"] == 12
    row = rows[0]
    want = ((row["prompt_tokens"] - row["cached_tokens"]) * 1.0 + row["cached_tokens"] * 0.5 + 12 * 2.0) / 1e6
    assert row["cost_usd"] == pytest.approx(want) and row["model"] == "tiny" and row["key_id"] == key.split("-")[2]
    api = httpx.get(cluster.lb.url + "/v1/usage", params={"tenant": "use-t"},
                    headers={"authorization": f"Bearer {admin}"}, timeout=30)
    assert api.status_code == 200 and api.json()["data"] == rows
    # a tenant key cannot read usage; an admin key cannot generate
    assert httpx.get(cluster.lb.url + "/v1/usage", headers={"authorization": f"Bearer {key}"}).status_code == 403
    with pytest.raises(openai.PermissionDeniedError):
        _complete(cluster.lb.url, admin)


def test_postgres_restart_fails_clearly_then_recovers(cluster):
    key = _key(cluster, "--tenant", "pg-t")
    assert _complete(cluster.lb.url, key).usage.completion_tokens == 4
    cluster.pg.stop()
    try:
        for r in cluster.replicas:
            with pytest.raises(openai.InternalServerError) as e:
                _complete(r.url, key)
            assert e.value.status_code == 503 and "PostgreSQL" in e.value.message
        assert httpx.get(cluster.lb.url + "/ready").status_code == 200   # the replicas themselves stay up
    finally:
        cluster.pg.start()
    for r in cluster.replicas:
        assert _complete(r.url, key).usage.completion_tokens == 4


def test_redis_restart_fails_clearly_then_recovers(cluster):
    key = _key(cluster, "--tenant", "redis-t", "--rpm", "100")
    assert _complete(cluster.lb.url, key).usage.completion_tokens == 4
    cluster.redis.stop()
    try:
        with pytest.raises(openai.InternalServerError) as e:
            _complete(cluster.replicas[0].url, key)
        assert e.value.status_code == 503 and "Redis" in e.value.message
    finally:
        cluster.redis.start()
    assert _complete(cluster.replicas[0].url, key).usage.completion_tokens == 4


def test_replica_killed_mid_stream(cluster):
    key = _key(cluster, "--tenant", "kill-t")
    r0, r1 = cluster.replicas
    _complete(r0.url, key)   # finished on the replica about to die: must stay recorded, once
    survivor: dict = {}

    def other_stream():
        # greedy: sampled, the tiny model ends with its EOS before 300 tokens about once in 300 runs
        s = _client(r1.url, key).completions.create(model="tiny", prompt="Once", max_tokens=300, temperature=0,
                                                   stream=True, stream_options={"include_usage": True})
        survivor["chunks"] = list(s)

    t = threading.Thread(target=other_stream)
    t.start()
    stream = _client(r0.url, key).completions.create(model="tiny", prompt="Once upon", max_tokens=3000, stream=True)
    got = 0
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
        for _ in stream:
            got += 1
            if got == 3:
                r0.kill()
    t.join(120)
    assert survivor["chunks"][-1].usage.completion_tokens == 300
    # the balancer's health checks drop the dead replica; requests go on through r1
    assert wait_for(lambda: httpx.get(cluster.lb.url + "/ready", timeout=5).status_code == 200, 10)
    for _ in range(3):
        assert _complete(cluster.lb.url, key).usage.completion_tokens == 4
    rows = json.loads(cluster.realm("usage", "--tenant", "kill-t", "--json").stdout)
    # 1 finished on r0 + the survivor + 3 through the balancer; the killed stream never finished
    assert sum(r["requests"] for r in rows) == 5
    assert sum(r["generated_tokens"] for r in rows) == 4 + 300 + 3 * 4
