"""Host-side weights: one copy per process, shared by every Realm; Memory64 past 4 GiB."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from realm_web import Realm, store

RSS_PROBE = textwrap.dedent("""
    import json, os, sys
    from realm_web import Realm, store

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    path, link = sys.argv[1], sys.argv[2]
    out = {"start": rss()}
    a = Realm.load(path, n_ctx=256)
    a.generate("Hello", max_tokens=4, temperature=0)
    out["one"] = rss()
    b = Realm.load(path, n_ctx=256)       # same file
    c = Realm.load(link, n_ctx=256)       # same file through a symlink
    b.generate("Hello", max_tokens=4, temperature=0)
    c.generate("Hello", max_tokens=4, temperature=0)
    out["three"] = rss()
    out["shared"] = a.model is b.model is c.model
    out["held"] = store.loaded()
    for r in (a, b, c):
        r.close()
    out["after_close"] = store.loaded()
    print(json.dumps(out))
""")


def test_second_load_of_a_model_adds_no_weights(default_model_path, tmp_path):
    """RSS grows by the model once; two more Realms of the same file add only their sessions."""
    link = tmp_path / "alias.gguf"
    link.symlink_to(default_model_path)
    res = subprocess.run([sys.executable, "-c", RSS_PROBE, str(default_model_path), str(link)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    size = os.path.getsize(default_model_path)
    first = out["one"] - out["start"]
    more = out["three"] - out["one"]
    assert first > 0.8 * size, f"the first load should hold the weights ({first / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file)"
    assert more < 0.2 * size, f"two more sessions added {more / 2**20:.0f} MiB: the weights were copied again"
    assert out["shared"] is True
    assert len(out["held"]) == 1 and out["held"][0][1] == 3
    assert out["after_close"] == []


def test_store_refcounts_and_frees(default_model_path):
    a = Realm.load(default_model_path, n_ctx=64)
    b = Realm.load(default_model_path, n_ctx=64)
    assert a.model is b.model
    a.close()
    assert [n for _, n in store.loaded()] == [1]
    assert b.generate("The capital of France is", max_tokens=3, temperature=0)  # still usable
    b.close()
    assert store.loaded() == []


@pytest.mark.slow
def test_session_above_4_gib_generates_like_one_below(default_model_path):
    """Grow the model's Memory64 instance past 4 GiB, put a session's KV cache and
    scratch above the 4 GiB line, and check it computes exactly what a session below it does."""
    prompt = "The capital of France is"
    low = Realm.load(default_model_path, n_ctx=128)
    expected = low.generate(prompt, max_tokens=16, temperature=0)
    core = low.model.core
    filler = core.alloc(4 << 30)  # address space only: untouched pages cost no RSS
    high = Realm(low.model, n_ctx=128)
    try:
        assert core.memory_bytes() > 4 << 30
        kv = [core.call("realm_session_kv", high.session.handle, w) for w in (0, 1)]
        assert min(kv) > 4 << 30, f"the session's KV cache should live above the 4 GiB line: {kv}"
        assert high.generate(prompt, max_tokens=16, temperature=0) == expected
        # raw reads and writes above the line through the host's view, too
        probe = core.alloc(1 << 20)
        assert probe > 4 << 30
        core.write(probe, b"realm" * 100)
        assert core.read_bytes(probe, 500) == b"realm" * 100
        core.free(probe)
    finally:
        high.session.close()
        core.free(filler)
        low.close()
