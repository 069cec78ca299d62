"""The server's continuous batching (issue 12 part 2): every scheduler step is one batched
forward pass for all generating streams; outputs equal each request served alone.

The planner (realm_web/batching.py) is tested as pure functions; the scheduler through a real
server (ServerThread, the real openai client, /metrics) and, for a row the core refuses,
by driving one ModelWorker's steps by hand.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf

import httpx
import openai
import pytest

from realm_web.batching import Want, interleave_by_tenant, plan_step
from server_helpers import make_keys, metric, start_thread_server, wait_for

TENANTS = ["ta", "tb"]


# ------------------------------------------------------------------ planner
def test_interleave_by_tenant_keeps_each_tenants_order():
    items = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1), ("b", 2)]
    assert interleave_by_tenant(items, lambda x: x[0]) == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2),
                                                            ("a", 3)]
    assert interleave_by_tenant([], lambda x: x) == []


def test_plan_decode_first_then_prompt_chunks_within_budget():
    w = [Want("p1", "a", False, 100), Want("d1", "a", True), Want("d2", "b", True), Want("p2", "b", False, 5)]
    assert plan_step(w, budget=64, chunk=32) == [("d1", 1), ("d2", 1), ("p1", 32), ("p2", 5)]
    assert plan_step(w, budget=20, chunk=32) == [("d1", 1), ("d2", 1), ("p1", 18)]
    assert plan_step(w, budget=2, chunk=32) == [("d1", 1), ("d2", 1)]
    assert plan_step(w, budget=1, chunk=32) == [("d1", 1)]
    assert plan_step([Want("p", "a", False, 3)], budget=64, chunk=64) == [("p", 3)]
    assert plan_step([], budget=64, chunk=8) == []


def test_plan_a_tenant_with_many_streams_does_not_starve_another():
    many = [Want(f"a{i}", "a", True) for i in range(10)]
    w = many + [Want("b0", "b", True)]
    assert ("b0", 1) in plan_step(w, budget=3, chunk=8)          # b's only stream is in the first three
    prompts = [Want(f"a{i}", "a", False, 100) for i in range(3)] + [Want("b0", "b", False, 100)]
    assert [j for j, _ in plan_step(prompts, budget=64, chunk=32)] == ["a0", "b0"]


def test_served_last_rotates_who_was_left_out_to_the_front():
    from realm_web.batching import served_last
    jobs = ["a", "b", "c", "d"]
    assert served_last(jobs, ["b", "d"], key=str) == ["a", "c", "b", "d"]
    assert served_last(jobs, [], key=str) == jobs and served_last(jobs, jobs, key=str) == jobs


# ------------------------------------------------------------------ server
@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "keys.sqlite"


@pytest.fixture(scope="module")
def keys(keys_file):
    return make_keys(keys_file, TENANTS)


@pytest.fixture(scope="module")
def server(default_model_path, keys_file, keys):
    srv = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))],
                              prefill_chunk=16)
    yield srv
    srv.stop()


# prompts of different lengths (so prefill chunks and decode rows mix in one step), greedy and
# seeded sampling, a stop string and different max_tokens
REQUESTS = [
    ("ta", dict(prompt="The capital of France is", max_tokens=12, temperature=0)),
    ("tb", dict(prompt="Once upon a time, in a small village by the sea, there lived an old fisherman who "
                       "every morning", max_tokens=20, temperature=0.8, seed=7)),
    ("ta", dict(prompt="List three colours:", max_tokens=16, temperature=0, stop=["\n\n"])),
    ("tb", dict(prompt="def fibonacci(n):", max_tokens=9, temperature=0.7, top_p=0.9, seed=3)),
    ("ta", dict(prompt="Water boils at", max_tokens=14, temperature=1.0, seed=11)),
]


def _complete(srv, key, body):
    c = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0, timeout=300)
    r = c.completions.create(model="smol", **body)
    return r.choices[0].text, r.choices[0].finish_reason, r.usage.completion_tokens


def _hist(url, name):
    return metric(url, name + "_sum", model="smol"), metric(url, name + "_count", model="smol")


def test_concurrent_streams_are_batched_and_equal_alone(server, keys):
    alone = [_complete(server, keys[t], b) for t, b in REQUESTS]
    s0, n0 = _hist(server.url, "realm_batch_sessions")
    w0 = metric(server.url, "realm_queue_wait_seconds_count", model="smol")
    with cf.ThreadPoolExecutor(len(REQUESTS)) as ex:
        together = list(ex.map(lambda tb: _complete(server, keys[tb[0]], tb[1]), REQUESTS))
    assert together == alone
    s1, n1 = _hist(server.url, "realm_batch_sessions")
    assert n1 > n0 and (s1 - s0) / (n1 - n0) > 1.2, "streams were not batched"   # sessions per forward pass
    tok_sum, tok_n = _hist(server.url, "realm_batch_tokens")
    assert tok_n == metric(server.url, "realm_batch_steps_total", model="smol") and tok_sum >= tok_n
    assert metric(server.url, "realm_queue_wait_seconds_count", model="smol") == w0 + len(REQUESTS)
    assert wait_for(lambda: metric(server.url, "realm_active_requests", model="smol") == 0)


def test_one_stream_per_step_gives_the_same_text(default_model_path, keys_file, keys, server):
    one = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))],
                              batch_tokens=1)
    try:
        with cf.ThreadPoolExecutor(3) as ex:
            got = list(ex.map(lambda tb: _complete(one, keys[tb[0]], tb[1]), REQUESTS[:3]))
        s, n = _hist(one.url, "realm_batch_sessions")
        assert n > 0 and s == n                                       # one session per forward pass
    finally:
        one.stop()
    assert got == [_complete(server, keys[t], b) for t, b in REQUESTS[:3]]


def test_cancelled_stream_leaves_the_batch_alone(server, keys):
    others = [REQUESTS[0], REQUESTS[2]]
    alone = [_complete(server, keys[t], b) for t, b in others]
    cancelled0 = metric(server.url, "realm_cancelled_total", reason="client")

    def leave_early():
        with httpx.stream("POST", server.base_url + "/completions", headers={"authorization": f"Bearer {keys['tb']}"},
                          json={"model": "smol", "prompt": "Once upon a time", "max_tokens": 200, "stream": True,
                                "temperature": 0.8, "seed": 2}, timeout=120) as r:
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: ") and '"text"' in line:
                    seen += 1
                    if seen == 3:
                        return seen                                   # the client goes mid-batch
        return seen

    with cf.ThreadPoolExecutor(3) as ex:
        quitter = ex.submit(leave_early)
        rest = list(ex.map(lambda tb: _complete(server, keys[tb[0]], tb[1]), others))
        assert quitter.result() == 3
    assert rest == alone
    assert wait_for(lambda: metric(server.url, "realm_cancelled_total", reason="client") == cancelled0 + 1
                    and metric(server.url, "realm_active_requests", model="smol") == 0)


def test_batch_tokens_out_of_range_is_refused(default_model_path):
    from realm_web.server.scheduler import ModelWorker
    for bad in (0, 65, 10_000):
        with pytest.raises(ValueError, match=r"batch_tokens must be between 1 and 64"):
            ModelWorker("m", default_model_path, n_ctx=64, batch_tokens=bad)


def test_a_row_the_core_refuses_fails_alone(default_model_path):
    """One stream's decode row carries a token id the core refuses: that request gets an error,
    the step runs again without it, and the other streams' text equals theirs alone."""
    from realm_web import Realm
    from realm_web.sampling import GenerationOptions, SamplerSettings
    from realm_web.server.scheduler import Job, ModelWorker
    from realm_web.server.schemas import Sampling

    prompts = ["The capital of France is", "Water boils at", "List three colours:"]
    r = Realm.load(default_model_path, n_ctx=256)
    want = [r.generate(p, max_tokens=10, temperature=0) for p in prompts]
    w = ModelWorker("m", default_model_path, n_ctx=256, max_sessions=4)
    loop = asyncio.new_event_loop()
    try:
        async def make():
            return [Job("generate", "t", "completions", text=p, sampling=Sampling(
                SamplerSettings(temperature=0), GenerationOptions(max_tokens=10))) for p in prompts]
        jobs = loop.run_until_complete(make())
        with w._cv:      # (re-entrant) the scheduler thread waits: this test runs the steps itself
            for j in jobs:
                w._accept(j)
            w._admit()
            while any(j.gen.phase != "decode" or j.gen.pending is None for j in jobs):
                w._step()
            jobs[1].gen.pending = w.n_vocab + 5          # a row the core refuses by name
            w._step()
            assert jobs[1].done and not jobs[0].done and not jobs[2].done
            while not (jobs[0].done and jobs[2].done):
                w._step()
        loop.run_until_complete(asyncio.sleep(0))
        events = [[j.events.get_nowait() for _ in range(j.events.qsize())] for j in jobs]
    finally:
        w.stop()
        loop.close()
    err = [e for e in events[1] if e[0] == "error"]
    assert len(err) == 1 and "out of range" in str(err[0][1]) and "batch session " in str(err[0][1]) and " of 3: " in str(err[0][1])
    for i in (0, 2):
        assert "".join(e[1] for e in events[i] if e[0] == "text") == want[i]
        assert events[i][-1][0] == "done"


def test_speculative_server_batches_several_streams_and_drafts_for_one(default_model_path, keys_file, keys, server):
    """With --speculative ngram, a lone stream is decoded by verify passes (drafts counted) and
    concurrent streams share batched passes; the text is plain decoding's either way."""
    spec = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))],
                               speculative="ngram")
    try:
        quote = dict(prompt="Repeat exactly: the cat sat on the mat. the cat sat on the mat. the cat", max_tokens=16,
                     temperature=0)
        d0 = metric(spec.url, "realm_speculative_drafted_tokens_total", model="smol")
        assert _complete(spec, keys["ta"], quote) == _complete(server, keys["ta"], quote)
        assert metric(spec.url, "realm_speculative_drafted_tokens_total", model="smol") > d0
        s0, n0 = _hist(spec.url, "realm_batch_sessions")
        with cf.ThreadPoolExecutor(3) as ex:
            got = list(ex.map(lambda tb: _complete(spec, keys[tb[0]], tb[1]), REQUESTS[:3]))
        s1, n1 = _hist(spec.url, "realm_batch_sessions")
        assert n1 > n0 and (s1 - s0) / (n1 - n0) > 1.2
    finally:
        spec.stop()
    assert got == [_complete(server, keys[t], b) for t, b in REQUESTS[:3]]
