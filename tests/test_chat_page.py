"""`realm web`: the local server and its chat page (host/index.html + chat.js, on the JS SDK).

The server tests need nothing but Python. The page test runs headless Debian
Chromium through Playwright (never `playwright install`): load the default model,
chat, watch the reply stream in, stop it, chat again from a chosen GGUF file, and
check a screenshot is not blank. In CI (CI=true) a missing browser fails.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from conftest import missing

CHROMIUM = os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"]
ARTIFACTS = Path(os.environ.get("REALM_ARTIFACTS", tempfile.gettempdir()))


@pytest.fixture(scope="module")
def server(default_model_path):
    from realm_web import web
    srv = web.start("127.0.0.1", 0, model=default_model_path)
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, path, headers=None, method="GET"):
    host, port = srv.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


# ------------------------------------------------------------------ the server

def test_register_adds_the_web_command():
    from realm_web import web
    ap = argparse.ArgumentParser(prog="realm")
    web.register(ap.add_subparsers(dest="cmd", required=True))
    a = ap.parse_args(["web", "--port", "0", "--host", "127.0.0.1"])
    assert a.fn is web.cmd_web and a.port == 0 and a.host == "127.0.0.1" and a.model is None


def test_server_types_headers_and_ranges(server, default_model_path):
    r, body = _get(server, "/")
    assert r.status == 200 and b"chat.js" in body
    assert r.getheader("Cross-Origin-Opener-Policy") == "same-origin"
    assert r.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
    r, body = _get(server, "/realm.wasm")
    assert r.status == 200 and r.getheader("Content-Type") == "application/wasm" and body[:4] == b"\0asm"
    r, _ = _get(server, "/chat.js", method="HEAD")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/javascript")

    size = default_model_path.stat().st_size
    r, body = _get(server, "/models/default.gguf", {"Range": "bytes=0-3"})
    assert r.status == 206 and body == b"GGUF" and r.getheader("Content-Range") == f"bytes 0-3/{size}"
    r, body = _get(server, "/models/default.gguf", {"Range": "bytes=-5"})
    with open(default_model_path, "rb") as f:
        f.seek(size - 5)
        assert r.status == 206 and body == f.read()
    r, _ = _get(server, "/models/default.gguf", {"Range": f"bytes={size}-"})
    assert r.status == 416
    r, _ = _get(server, "/models/default.gguf", method="HEAD")
    assert r.status == 200 and int(r.getheader("Content-Length")) == size and r.getheader("Accept-Ranges") == "bytes"
    etag = r.getheader("ETag")
    r, _ = _get(server, "/models/default.gguf", {"If-None-Match": etag}, method="HEAD")
    assert r.status == 304

    for bad in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/js-sdk/../../etc/passwd"):
        r, _ = _get(server, bad)
        assert r.status in (403, 404), bad


def test_server_wheels_are_pure(server):
    r, body = _get(server, "/py/wheels.json")
    wheels = json.loads(body)["wheels"]
    assert {w.split("/")[-1].split("-")[0] for w in wheels} == {"realm_web", "jinja2", "markupsafe"}
    for w in wheels:
        r, data = _get(server, w)
        assert r.status == 200
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            assert z.testzip() is None
        assert not [n for n in names if n.endswith((".so", ".pyd", ".c", ".wasm"))], names
        assert any(n.endswith(".dist-info/WHEEL") for n in names)
        if "realm_web" in w:
            assert "realm_web/pyodide_host.py" in names and "realm_web/realm.py" in names


# -------------------------------------------------------------------- the page

def png_pixels(data: bytes):
    """(width, height, rows of bytes, channels) of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    p, idat, w, h, ch = 8, b"", 0, 0, 3
    while p < len(data):
        n, kind = struct.unpack(">I4s", data[p:p + 8])
        chunk = data[p + 8:p + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        p += 12 + n
    raw = zlib.decompress(idat)
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, ch


def _launch(p, profile):
    return p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                                ignore_default_args=["--headless"],
                                                viewport={"width": 1100, "height": 860})


def _reply_lengths(page, until_len: int, timeout: float):
    """Poll the last reply's length until it reaches until_len; the lengths seen."""
    seen, t_end = [], time.time() + timeout
    while time.time() < t_end:
        n = page.evaluate("(document.querySelector('.msg.assistant:last-of-type')?.firstChild?.data ?? '').length")
        if not seen or n != seen[-1]:
            seen.append(n)
        if n >= until_len:
            break
        time.sleep(0.05)
    return seen


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chat_page_streams_stops_and_renders(server, default_model_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; never `playwright install`)")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    from realm_web import web
    if [m for m in web.check_assets() if "pyodide" not in m.lower()]:
        missing("; ".join(web.check_assets()))

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = _launch(p, profile)
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_function("window.chatApp && window.chatApp.sdk", timeout=30_000)
        assert "press Load" in page.text_content("#status")
        # --enable-unsafe-webgpu gives headless Chromium a (software) adapter: the picker offers WebGPU
        page.wait_for_function("window.chatApp.gpu !== undefined")
        has_gpu = page.evaluate("navigator.gpu ? navigator.gpu.requestAdapter().then((a) => !!a) : false")
        assert page.evaluate("window.chatApp.gpu") == has_gpu == (not page.is_disabled("#device-webgpu"))

        # 1. load the default model, with progress
        page.click("#load")
        page.wait_for_function("!document.querySelector('#send').disabled || "
                               "document.querySelector('#status').classList.contains('error')", timeout=120_000)
        status = page.text_content("#status")
        assert status.startswith("ready"), status
        assert page.eval_on_selector("#progress", "e => e.value === e.max && e.max > 1")
        assert page.text_content("#stat-device").startswith("cpu")

        # 2. a long reply streams in; stop ends it
        page.fill("#temperature", "0")
        page.fill("#input", "Write a long story about a brave little dragon.")
        page.click("#send")
        page.wait_for_function("!document.querySelector('#stop').disabled")
        seen = _reply_lengths(page, until_len=60, timeout=120)
        assert len(seen) >= 4 and seen[-1] >= 60, seen  # grew over several steps: streaming
        page.click("#stop")
        page.wait_for_function("document.querySelector('.msg.assistant')?.dataset.finish", timeout=30_000)
        reply = page.eval_on_selector(".msg.assistant", "e => [e.dataset.finish, e.firstChild.data]")
        assert reply[0] == "stopped", reply
        time.sleep(0.5)
        assert page.eval_on_selector(".msg.assistant", "e => e.firstChild.data") == reply[1]  # no growth after stop
        assert page.is_enabled("#send") and not page.is_enabled("#stop")
        tps = page.text_content("#stat-tps")
        assert float(tps) > 0, tps

        # 3. the conversation goes on (history kept); it finishes on its own
        page.fill("#max-tokens", "12")
        page.fill("#input", "Now say hello.")
        page.press("#input", "Enter")
        page.wait_for_function("document.querySelectorAll('.msg.assistant')[1]?.dataset.finish", timeout=120_000)
        fin = page.eval_on_selector_all(".msg.assistant", "es => [es[1].dataset.finish, es[1].firstChild.data]")
        assert fin[0] == "length" and fin[1].strip(), fin
        assert page.evaluate("window.chatApp.history.length") == 4
        shot = page.screenshot(path=str(ARTIFACTS / "realm-web-chat.png"))

        # 4. a GGUF chosen from disk (the drop path: a File, streamed by the SDK)
        page.set_input_files("#model-file", str(default_model_path))
        assert page.is_checked("#model-drop")
        page.click("#load")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('ready') && "
                               "document.querySelector('#status').textContent.includes('Q4_1') || "
                               "document.querySelector('#status').classList.contains('error')", timeout=120_000)
        assert page.text_content("#status").startswith("ready"), page.text_content("#status")
        page.fill("#input", "What is the capital of France?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('.msg.assistant')[0]?.dataset.finish", timeout=120_000)
        got = page.eval_on_selector(".msg.assistant", "e => e.firstChild.data")
        from realm_web import Realm
        with Realm.load(default_model_path) as native:  # greedy, 12 tokens: the native host's reply
            want = native.chat([{"role": "user", "content": "What is the capital of France?"}],
                               max_tokens=12, temperature=0)
        assert got == want
        assert not errors, errors
        ctx.close()

    # the screenshot shows a page, not a blank
    w, h, rows, ch = png_pixels(shot)
    assert (w, h) == (1100, 860)
    sample = [rows[y][x:x + 3] for y in range(0, h, 7) for x in range(0, w * ch, ch * 7)]
    colours = set(sample)
    bg = max(colours, key=sample.count)
    non_bg = sum(1 for s in sample if s != bg) / len(sample)
    assert len(colours) > 20 and non_bg > 0.2, (len(colours), non_bg)
