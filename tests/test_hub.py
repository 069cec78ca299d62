"""`realm pull` / `realm models` / `realm serve --model hf:...` against a local stand-in for the Hub (HF_ENDPOINT):
huggingface_hub's real download code, never the network."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import openai
import pytest

from hub_mock import COMMIT, MockHub
from server_helpers import ROOT, last_line, spawn_cli_server

REPO, FILE = "realm-test/tiny-llama-GGUF", "tiny.gguf"


@pytest.fixture(scope="module")
def tiny_bytes(synthetic_model) -> bytes:
    return synthetic_model(n_layer=1, n_embd=64, n_ff=128, n_head=2, n_head_kv=1, seed=7).read_bytes()


@pytest.fixture
def hub(tiny_bytes):
    with MockHub() as h:
        h.files[(REPO, FILE)] = tiny_bytes
        yield h


@pytest.fixture
def env(tmp_path, hub) -> dict:
    e = dict(os.environ)
    e.update(HF_ENDPOINT=hub.url, REALM_MODELS=str(tmp_path / "models"), HF_HOME=str(tmp_path / "hf"),
             HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def realm(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realm_web.cli", *args], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)


def test_pull_resumes_checks_and_lists(env, hub, tiny_bytes, tmp_path):
    # the first download breaks off two thirds of the way (past huggingface_hub's first 10 MB chunk)
    hub.drop_after = len(tiny_bytes) * 2 // 3
    r = realm(env, "pull", REPO, FILE)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "models" / "realm-test--tiny-llama-GGUF" / FILE
    assert last_line(r.stdout) == str(path)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(tiny_bytes).digest()
    gets = [rng for m, _, rng in hub.requests if m == "GET"]
    assert gets[0] is None and len(gets) == 2, gets
    resumed_at = int(gets[1].removeprefix("bytes=").removesuffix("-"))   # resumed, not restarted
    assert 0 < resumed_at <= len(tiny_bytes) * 2 // 3

    listed = json.loads(realm(env, "models", "list", "--json").stdout)
    assert [m["name"] for m in listed] == [f"{REPO}/{FILE}"]
    assert listed[0]["commit"] == COMMIT and listed[0]["size"] == len(tiny_bytes)
    info = json.loads(realm(env, "models", "info", FILE, "--json").stdout)
    assert info["architecture"] == "llama" and info["sha256"] == hashlib.sha256(tiny_bytes).hexdigest()

    n = len(hub.requests)
    assert realm(env, "pull", REPO, FILE).returncode == 0 and len(hub.requests) == n   # already here: no request
    assert realm(env, "models", "rm", f"{REPO}/{FILE}").returncode == 0
    assert not path.exists() and json.loads(realm(env, "models", "list", "--json").stdout) == []
    r = realm(env, "models", "rm", FILE)
    assert r.returncode == 1 and "no pulled model" in r.stderr


def test_checksum_mismatch_is_refused(env, hub, tmp_path):
    hub.corrupt = True
    r = realm(env, "pull", REPO, FILE)
    assert r.returncode == 1 and "checksum mismatch" in r.stderr
    assert not (tmp_path / "models" / "realm-test--tiny-llama-GGUF" / FILE).exists()


def test_unknown_repo_and_file(env, hub):
    r = realm(env, "pull", "nobody/nothing", FILE)
    assert r.returncode == 1 and "no repository 'nobody/nothing'" in r.stderr
    r = realm(env, "pull", REPO, "missing.gguf")
    assert r.returncode == 1 and "no file 'missing.gguf'" in r.stderr
    r = realm(env, "pull", "not a repo", FILE)
    assert r.returncode == 1 and "not a Hub repository id" in r.stderr


@pytest.mark.slow
def test_serve_pulls_on_first_use(env, hub):
    p, url = spawn_cli_server("--no-auth", "--model", f"hf:{REPO}/{FILE}:tiny", "--threads", "1", env=env)
    try:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        assert [m.id for m in c.models.list().data] == ["tiny"]
        assert c.completions.create(model="tiny", prompt="Hi", max_tokens=3).usage.completion_tokens == 3
    finally:
        p.terminate()
        p.wait(30)
    assert any(m == "GET" for m, _, _ in hub.requests)
