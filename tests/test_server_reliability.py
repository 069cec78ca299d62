"""`realm serve` under abuse: bad requests, disconnects, 32 concurrent streams
across 4 tenants, SIGTERM. Every server binds 127.0.0.1. No timing assertions:
waits are bounded only so a broken server cannot hang the suite."""
from __future__ import annotations

import concurrent.futures as cf
import json
import signal
import threading

import httpx
import openai
import pytest
from server_helpers import make_keys, metric, spawn_cli_server, start_thread_server, wait_for

TENANTS = ["t0", "t1", "t2", "t3"]
N_CTX = 256


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "keys.sqlite"


@pytest.fixture(scope="module")
def keys(keys_file):
    return make_keys(keys_file, TENANTS)


@pytest.fixture(scope="module")
def server(default_model_path, keys_file, keys):
    srv = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))], n_ctx=N_CTX,
                              max_body=64 * 1024)
    yield srv
    srv.stop()


_HTTP: list = []    # one client for the module: a new one per request costs ~0.1 s of SSL setup


@pytest.fixture(scope="module", autouse=True)
def _close_http():
    yield
    while _HTTP:
        _HTTP.pop().close()


def _post(server, key, path, body=None, content=None, headers=None, timeout=60):
    h = {"authorization": f"Bearer {key}"}
    if content is not None:
        h["content-type"] = "application/json"
    h.update(headers or {})
    if not _HTTP:
        _HTTP.append(httpx.Client())
    return _HTTP[0].post(server.base_url + path, json=body, content=content, headers=h, timeout=timeout)


CHAT = "/chat/completions"
COMP = "/completions"
EMB = "/embeddings"
M = [{"role": "user", "content": "hi"}]

BAD = [
    # (path, body or raw bytes, status, param)
    (CHAT, b'{"model": "smol", "messages": [', 400, None),
    (CHAT, b"[1, 2, 3]", 400, None),
    (CHAT, b"", 400, None),
    (CHAT, b"\xff\xfe not utf-8", 400, None),
    (CHAT, {"messages": M}, 400, "model"),
    (CHAT, {"model": 7, "messages": M}, 400, "model"),
    (CHAT, {"model": "smol"}, 400, "messages"),
    (CHAT, {"model": "smol", "messages": "hi"}, 400, "messages"),
    (CHAT, {"model": "smol", "messages": []}, 400, "messages"),
    (CHAT, {"model": "smol", "messages": [{"content": "x"}]}, 400, "messages[0].role"),
    (CHAT, {"model": "smol", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    (CHAT, {"model": "smol", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    (CHAT, {"model": "smol", "messages": M, "max_tokens": "10"}, 400, "max_tokens"),
    (CHAT, {"model": "smol", "messages": M, "max_tokens": -5}, 400, "max_tokens"),
    (CHAT, {"model": "smol", "messages": M, "max_tokens": 0}, 400, "max_tokens"),
    (CHAT, {"model": "smol", "messages": M, "max_tokens": 10 ** 12}, 400, "max_tokens"),
    (CHAT, {"model": "smol", "messages": M, "max_tokens": N_CTX + 1}, 400, "max_tokens"),
    (CHAT, {"model": "smol", "messages": M, "max_completion_tokens": -1}, 400, "max_completion_tokens"),
    (CHAT, {"model": "smol", "messages": M, "max_tokens": True}, 400, "max_tokens"),
    (CHAT, {"model": "smol", "messages": M, "temperature": "hot"}, 400, "temperature"),
    (CHAT, {"model": "smol", "messages": M, "temperature": 9}, 400, "temperature"),
    (CHAT, {"model": "smol", "messages": M, "top_p": 1.5}, 400, "top_p"),
    (CHAT, {"model": "smol", "messages": M, "stop": 5}, 400, "stop"),
    (CHAT, {"model": "smol", "messages": M, "stop": ["a", 1]}, 400, "stop[1]"),
    (CHAT, {"model": "smol", "messages": M, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    (CHAT, {"model": "smol", "messages": M, "n": 0}, 400, "n"),
    (CHAT, {"model": "smol", "messages": M, "n": "two"}, 400, "n"),
    (CHAT, {"model": "smol", "messages": M, "seed": "x"}, 400, "seed"),
    (CHAT, {"model": "smol", "messages": M, "stream": "yes"}, 400, "stream"),
    (CHAT, {"model": "smol", "messages": M, "tools": [{"type": "function"}]}, 400, "tools[0]"),
    (CHAT, {"model": "gpt-4o", "messages": M}, 404, "model"),
    (CHAT, {"model": "smol", "messages": [{"role": "user", "content": "word " * 400}]}, 400, "messages"),
    (COMP, {"model": "smol"}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": 42}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": ""}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": ["a", "b"]}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": [1, 99999999]}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": [1, -1]}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": "word " * 400}, 400, "prompt"),
    (COMP, {"model": "smol", "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
    (COMP, {"model": "smol", "prompt": "x", "echo": True}, 400, "echo"),
    (EMB, {"model": "smol"}, 400, "input"),
    (EMB, {"model": "smol", "input": 5}, 400, "input"),
    (EMB, {"model": "smol", "input": ""}, 400, "input"),
    (EMB, {"model": "smol", "input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
    (EMB, {"model": "smol", "input": "x", "dimensions": 3}, 400, "dimensions"),
    (EMB, {"model": "smol", "input": "word " * 400}, 400, "input"),
    (EMB, {"model": "nope", "input": "x"}, 404, "model"),
]


@pytest.mark.parametrize("path,body,status,param", BAD, ids=[f"{i}-{b[0].strip('/')}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_request(server, keys, path, body, status, param):
    if isinstance(body, bytes):
        r = _post(server, keys["t0"], path, content=body)
    else:
        r = _post(server, keys["t0"], path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"]
    assert err["param"] == param, err
    if param:
        assert param.split("[")[0].split(".")[0] in err["message"], err["message"]


def test_oversize_body(server, keys):
    big = {"model": "smol", "messages": [{"role": "user", "content": "x" * (100 * 1024)}]}
    r = _post(server, keys["t0"], CHAT, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():                      # no Content-Length: the limit holds while reading
        yield b'{"model": "smol", "prompt": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'
    r = httpx.post(server.base_url + COMP, content=chunks(), timeout=60,
                   headers={"authorization": f"Bearer {keys['t0']}", "content-type": "application/json"})
    assert r.status_code == 413


def test_unknown_routes_are_json(server, keys):
    r = httpx.get(server.base_url + "/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server.base_url + CHAT)
    assert r.status_code == 405 and "error" in r.json()


def test_garbage_never_crashes(server, keys):
    import random
    rnd = random.Random(7)
    for i in range(60):
        raw = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
        path = [CHAT, COMP, EMB][i % 3]
        r = _post(server, keys["t1"], path, content=raw)
        assert 400 <= r.status_code < 500, (raw, r.text)
    r = _post(server, keys["t1"], COMP, {"model": "smol", "prompt": "Hi", "max_tokens": 1})
    assert r.status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200


def test_disconnect_mid_stream_frees_slot(server, keys):
    url = server.url
    gen0 = metric(url, "realm_generated_tokens_total", tenant="t2")
    cancelled0 = metric(url, "realm_cancelled_total", reason="client")
    with httpx.stream("POST", server.base_url + COMP, headers={"authorization": f"Bearer {keys['t2']}"},
                      json={"model": "smol", "prompt": "Once upon a time", "max_tokens": 200, "stream": True,
                            "temperature": 0.8, "seed": 1}, timeout=60) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"text"' in line:
                seen += 1
                if seen == 2:
                    break                                   # leave mid-stream
    assert wait_for(lambda: metric(url, "realm_active_requests", model="smol") == 0
                    and metric(url, "realm_cancelled_total", reason="client") == cancelled0 + 1)
    gen = metric(url, "realm_generated_tokens_total", tenant="t2") - gen0
    assert 2 <= gen < 200
    # the same happens to a non-streaming request whose client gives up
    cancelled1 = metric(url, "realm_cancelled_total", reason="client")
    with pytest.raises(httpx.ReadTimeout):
        # (seed 2 runs the full 200 tokens without an end-of-text: seconds of work even on 2 threads)
        _post(server, keys["t2"], COMP, {"model": "smol", "prompt": "Once upon a time", "max_tokens": 200,
                                         "temperature": 0.8, "seed": 2}, timeout=0.8)
    assert wait_for(lambda: metric(url, "realm_active_requests", model="smol") == 0
                    and metric(url, "realm_cancelled_total", reason="client") == cancelled1 + 1)


@pytest.mark.slow
def test_32_concurrent_streams_4_tenants(server, keys):
    """32 streaming clients (8 per tenant, greedy) finish with correct usage, and each stream carries
    exactly its own tenant's text: a mixed-up KV cache or session would change what greedy decoding says.
    8 tokens: the four prompts' greedy texts must differ, and two of them share their first 4 tokens."""
    prompts = {t: f"Tenant {t.upper()} writes: The best thing about {fruit} is" for t, fruit in
               zip(TENANTS, ["apples", "rivers", "engines", "music"])}
    clients = {t: openai.OpenAI(base_url=server.base_url, api_key=keys[t], max_retries=0, timeout=300)
               for t in TENANTS}

    def run(t):
        s = clients[t].completions.create(model="smol", prompt=prompts[t], max_tokens=8, temperature=0, stream=True,
                                          stream_options={"include_usage": True})
        text, ids, usage, finish = "", set(), None, None
        for ch in s:
            ids.add(ch.id)
            if ch.choices:
                text += ch.choices[0].text
                finish = ch.choices[0].finish_reason or finish
            if ch.usage:
                usage = ch.usage
        return t, text, ids, usage, finish

    want = {t: run(t) for t in TENANTS}                   # one at a time first
    assert len({w[1] for w in want.values()}) == 4        # four different texts
    before = {t: metric(server.url, "realm_generated_tokens_total", tenant=t) for t in TENANTS}
    jobs = [t for t in TENANTS for _ in range(8)]
    with cf.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(run, jobs))
    assert len(results) == 32
    all_ids = set()
    for t, text, ids, usage, finish in results:
        assert text == want[t][1], (t, text, want[t][1])
        assert usage.completion_tokens == want[t][3].completion_tokens
        assert usage.prompt_tokens == want[t][3].prompt_tokens
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert finish == want[t][4]
        assert len(ids) == 1
        all_ids |= ids
    assert len(all_ids) == 32
    for t in TENANTS:
        got = metric(server.url, "realm_generated_tokens_total", tenant=t) - before[t]
        assert got == sum(r[3].completion_tokens for r in results if r[0] == t)
    assert metric(server.url, "realm_sessions", model="smol") <= 32
    assert metric(server.url, "realm_active_requests", model="smol") == 0


# ----------------------------------------------------------------- SIGTERM
def _stream_in_thread(url, body, out: dict):
    def go():
        try:
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as r:
                out["status"] = r.status_code
                lines = []
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        lines.append(line[6:])
                        out["first"] = True
                out["lines"] = lines
        except Exception as e:  # noqa: BLE001
            out["error"] = repr(e)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_sigterm_drains_in_flight(default_model_path):
    p, url = spawn_cli_server("--no-auth", "--grace", "120", "--model", f"{default_model_path}:smol")
    try:
        out: dict = {}
        t = _stream_in_thread(url, {"model": "smol", "prompt": "Once upon a time", "max_tokens": 12,
                                    "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}, out)
        assert wait_for(lambda: out.get("first") or "error" in out, timeout=120)
        p.send_signal(signal.SIGTERM)
        # no new requests: refused (listener closed) or 503 on a kept-alive connection
        def refused():
            try:
                r = httpx.post(url + "/v1/completions", json={"model": "smol", "prompt": "x", "max_tokens": 1},
                               timeout=10)
                return r.status_code == 503
            except httpx.TransportError:
                return True
        assert wait_for(refused, timeout=30)
        t.join(180)
        assert "error" not in out, out
        lines = out["lines"]
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(x) for x in lines[:-1]]
        assert chunks[-1]["usage"]["completion_tokens"] == 12
        assert any(c["choices"] and c["choices"][0]["finish_reason"] == "length" for c in chunks)
        assert p.wait(timeout=120) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log = p.stdout.read()
    assert "NO API KEYS ARE CHECKED" in log          # --no-auth says so loudly
    assert "drain" in log


def test_sigterm_grace_expires(default_model_path):
    p, url = spawn_cli_server("--no-auth", "--grace", "1", "--model", f"{default_model_path}:smol")
    try:
        out: dict = {}
        t = _stream_in_thread(url, {"model": "smol", "prompt": "Once upon a time", "max_tokens": 2000,
                                    "temperature": 0.7, "stream": True}, out)
        assert wait_for(lambda: out.get("first") or "error" in out, timeout=120)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 0
        t.join(60)
        # the stream was ended by the server, with an error event rather than a silent cut
        assert "lines" in out, out
        assert out["lines"][-1] == "[DONE]"
        assert "error" in json.loads(out["lines"][-2])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
