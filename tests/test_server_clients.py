"""Clients of `realm serve`: the realm_web.client SDK (sync, async, errors, retries),
the WebSocket endpoint /v1/stream, the official `openai` npm package under Node,
and the `api-key` CLI."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server_helpers import KEY_RE, ROOT, last_line, make_keys, metric, start_thread_server  # noqa: E402

JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "keys.sqlite"


@pytest.fixture(scope="module")
def keys(keys_file):
    k = make_keys(keys_file, ["alpha", "beta"])
    k.update(make_keys(keys_file, ["slow-rpm"], rpm=1))
    k.update(make_keys(keys_file, ["slow-rpm2"], rpm=1))
    return k


@pytest.fixture(scope="module")
def server(default_model_path, keys_file, keys):
    srv = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))])
    yield srv
    srv.stop()


# ------------------------------------------------------------------------- SDK
def test_sdk_sync(server, keys):
    from realm_web.client import Client
    with Client(server.url, api_key=keys["alpha"]) as c:
        assert c.models() == ["smol"]
        assert c.health() and c.ready()
        r = c.complete("The capital of France is", max_tokens=3, temperature=0)
        assert r.text.startswith(" Paris") and r.finish_reason == "length" and r.usage.completion_tokens == 3
        msgs = [{"role": "user", "content": "Name a colour."}]
        whole = c.chat(msgs, max_tokens=4, temperature=0)
        with c.chat_stream(msgs, max_tokens=4, temperature=0) as s:
            pieces = [ch.text for ch in s]
        assert "".join(pieces) == s.text == whole.text
        assert s.usage.completion_tokens == whole.usage.completion_tokens
        assert s.finish_reason == whole.finish_reason
        e = c.embed(["one", "two"])
        assert len(e.vectors) == 2 and len(e.vectors[0]) == 576


def test_sdk_async(server, keys):
    from realm_web.client import AsyncClient

    async def main():
        async with AsyncClient(server.base_url, api_key=keys["beta"]) as c:
            assert await c.models() == ["smol"]
            r = await c.complete("The capital of France is", max_tokens=3, temperature=0)
            s = await c.complete_stream("The capital of France is", max_tokens=3, temperature=0)
            text = "".join([ch.text async for ch in s])
            both = await asyncio.gather(c.chat([{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0),
                                        c.chat([{"role": "user", "content": "Yo"}], max_tokens=2, temperature=0))
            return r, text, s, both
    r, text, s, both = asyncio.run(main())
    assert text == r.text and s.usage.completion_tokens == 3
    assert all(b.usage.completion_tokens <= 2 for b in both)


def test_sdk_typed_errors(server, keys):
    from realm_web import client as rc
    with rc.Client(server.url, api_key="sk-realm-nope", max_retries=0) as c:
        with pytest.raises(rc.AuthenticationError) as ei:
            c.models()
        assert ei.value.status == 401 and ei.value.code == "invalid_api_key"
    with rc.Client(server.url, api_key=keys["alpha"], max_retries=0) as c:
        with pytest.raises(rc.ModelNotFoundError):
            c.chat([{"role": "user", "content": "x"}], model="nope")
        with pytest.raises(rc.BadRequestError) as ei:
            c.complete("x", max_tokens=-3)
        assert ei.value.param == "max_tokens"
        with pytest.raises(rc.APITimeoutError):
            rc.Client(server.url, api_key=keys["alpha"], max_retries=0, timeout=0.05).complete(
                "Tell me a long story", max_tokens=200)
    with rc.Client(server.url, api_key=keys["slow-rpm"], max_retries=0) as c:
        c.complete("Hi", max_tokens=1)
        with pytest.raises(rc.RateLimitError) as ei:
            c.complete("Hi", max_tokens=1)
        assert 1 <= ei.value.retry_after <= 60


def test_sdk_retry_honours_retry_after(server, keys, monkeypatch):
    """A real 429 from the server (rpm=1): the SDK sleeps what Retry-After says, then tries again."""
    from realm_web import client as rc
    slept = []
    monkeypatch.setattr(rc.time, "sleep", lambda s: slept.append(s))
    with rc.Client(server.url, api_key=keys["slow-rpm2"], max_retries=2) as c:
        c.complete("Hi", max_tokens=1)
        with pytest.raises(rc.RateLimitError) as ei:
            c.complete("Hi", max_tokens=1)          # the bucket refills in ~60 s; sleeping is mocked
    assert len(slept) == 2
    assert all(abs(s - ei.value.retry_after) < 5 and s > 30 for s in slept), (slept, ei.value.retry_after)
    assert metric(server.url, "realm_rate_limited_total", tenant="slow-rpm2") == 3


def test_sdk_retries_5xx_with_backoff():
    from realm_web import client as rc
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503, headers={"retry-after-ms": "10"},
                                  json={"error": {"message": "busy", "type": "server_error", "code": "unavailable"}})
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})

    c = rc.Client("http://test", api_key="k", max_retries=2, transport=httpx.MockTransport(handler))
    assert c.models() == ["m"] and len(calls) == 3
    calls.clear()
    c = rc.Client("http://test", api_key="k", max_retries=1, backoff=0.001, transport=httpx.MockTransport(handler))
    with pytest.raises(rc.ServerError) as ei:
        c.models()
    assert ei.value.status == 503 and len(calls) == 2

    def limited(request):
        return httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "slow down"}})
    c = rc.Client("http://test", max_retries=0, transport=httpx.MockTransport(limited))
    with pytest.raises(rc.RateLimitError) as ei:
        c.models()
    assert ei.value.retry_after == 7.0


# ------------------------------------------------------------------- WebSocket
def _ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/stream"


def test_websocket_multiplex_and_cancel(server, keys):
    from websockets.sync.client import connect
    body_a = {"model": "smol", "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}
    want = httpx.post(server.base_url + "/completions", json=body_a, timeout=60,
                      headers={"authorization": f"Bearer {keys['alpha']}"}).json()
    with connect(_ws_url(server), additional_headers={"Authorization": f"Bearer {keys['alpha']}"}) as ws:
        ws.send(json.dumps({"type": "request", "id": "b", "endpoint": "chat.completions",
                            "body": {"model": "smol", "messages": [{"role": "user", "content": "Tell a story."}],
                                     "max_tokens": 200, "temperature": 0}}))
        ws.send(json.dumps({"type": "request", "id": "a", "endpoint": "completions", "body": body_a}))
        text = {"a": "", "b": ""}
        got: dict[str, dict] = {}
        cancelled_sent = False
        while len(got) < 2:
            m = json.loads(ws.recv(timeout=120))
            if m["type"] == "chunk":
                ch = m["data"]["choices"][0]
                text[m["id"]] += ch.get("text") or (ch.get("delta") or {}).get("content") or ""
                if m["id"] == "b" and not cancelled_sent:
                    ws.send(json.dumps({"type": "cancel", "id": "b"}))
                    cancelled_sent = True
            elif m["type"] in ("done", "cancelled", "error"):
                got[m["id"]] = m
        assert got["a"]["type"] == "done" and got["a"]["usage"]["completion_tokens"] == 3
        assert text["a"] == want["choices"][0]["text"]
        assert got["b"]["type"] == "cancelled"
        # the connection goes on: another request, and a bad one
        ws.send(json.dumps({"id": "c", "endpoint": "completions", "body": {**body_a, "max_tokens": -1}}))
        m = json.loads(ws.recv(timeout=60))
        assert m["type"] == "error" and m["id"] == "c" and m["status"] == 400 and m["error"]["param"] == "max_tokens"
        ws.send(json.dumps({"type": "ping", "id": "p"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "pong"


def test_websocket_needs_key(server):
    from websockets.sync.client import connect
    with connect(_ws_url(server)) as ws:
        m = json.loads(ws.recv(timeout=30))
        assert m["type"] == "error" and m["status"] == 401 and m["error"]["code"] == "invalid_api_key"
    with connect(_ws_url(server) + "?api_key=sk-realm-wrong") as ws:
        assert json.loads(ws.recv(timeout=30))["status"] == 401


# ------------------------------------------------------------------ openai npm
def _npm_install() -> str | None:
    if (JS_DIR / "node_modules" / "openai" / "package.json").is_file():
        return None
    npm = shutil.which("npm")
    if not npm:
        return "npm is not installed"
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return f"npm install failed: {r.stderr[-500:]}"
    return None


def test_openai_npm_client(server, keys):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    why = _npm_install()
    if why:
        pytest.skip(why)
    r = subprocess.run([node, str(JS_DIR / "openai_client.mjs"), server.base_url, keys["beta"], "smol"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["models"] == ["smol"]
    assert out["completion"]["text"].startswith(" Paris") and out["completion"]["usage"]["completion_tokens"] == 3
    assert out["completion_stream"]["text"] == out["completion"]["text"]
    assert out["chat_stream"]["text"] == out["chat"]["text"]
    assert out["chat_stream"]["usage"]["completion_tokens"] == out["chat"]["usage"]["completion_tokens"]
    assert out["chat_stream"]["finish"] == out["chat"]["finish"]
    assert out["bad_key"]["status"] == 401


# ------------------------------------------------------------------------- CLI
def _cli(*args, keys_file):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "realm_web.server.cli", "api-key", *args, "--keys", str(keys_file)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def test_api_key_cli(tmp_path):
    kf = tmp_path / "sub" / "keys.sqlite"
    r = _cli("generate", "--tenant", "acme", "--tpm", "500", keys_file=kf)
    assert r.returncode == 0, r.stderr
    key = last_line(r.stdout)
    assert KEY_RE.match(key)
    kid = key.split("-")[2]
    assert oct(kf.stat().st_mode & 0o777) == "0o600"
    assert key not in kf.read_bytes().decode("latin-1")              # only the hash is stored
    ls = _cli("list", keys_file=kf)
    assert kid in ls.stdout and "acme" in ls.stdout and key not in ls.stdout and "active" in ls.stdout
    assert _cli("disable", kid, keys_file=kf).returncode == 0
    assert "disabled" in _cli("list", keys_file=kf).stdout
    assert _cli("enable", "--tenant", "acme", keys_file=kf).returncode == 0
    assert "active" in _cli("list", keys_file=kf).stdout
    assert _cli("limits", "--tenant", "acme", "--rpm", "10", keys_file=kf).returncode == 0
    assert _cli("revoke", kid, keys_file=kf).returncode == 0
    assert kid not in _cli("list", keys_file=kf).stdout
    listed = json.loads(_cli("list", "--all", "--json", keys_file=kf).stdout)
    assert listed[0]["status"] == "revoked" and listed[0]["tpm"] == 500
    assert _cli("enable", kid, keys_file=kf).returncode == 1           # revoked stays revoked

    from realm_web.server.keys import KeyStore
    ks = KeyStore(kf)
    assert ks.authenticate(key) is None
    assert ks.tenant_limits("acme") == (10, None)
    ks.close()


def test_cli_register_hook():
    """The lead wires `register(sub)` into realm_web/cli.py; it must add serve and api-key."""
    import argparse
    from realm_web.server.cli import register
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    register(sub)
    a = ap.parse_args(["serve", "--no-auth", "--port", "9999", "--rpm", "5"])
    assert a.no_auth and a.port == 9999 and a.rpm == 5 and callable(a.fn)
    a = ap.parse_args(["api-key", "generate", "--tenant", "x"])
    assert a.tenant == "x" and callable(a.fn)
