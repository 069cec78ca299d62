"""The core's GGUF parser against gguf-py's GGUFReader, and against hostile files."""
from __future__ import annotations

import random
import struct

import gguf
import numpy as np
import pytest

from realm_web.core_model import CoreModel
from realm_web.errors import ModelFormatError, RealmError, UnsupportedModelError


def reader_view(path):
    """What gguf-py reads: {key: (type, arr_type, value)} and the tensor table."""
    r = gguf.GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        t = f.types[0]
        at = f.types[1] if t == gguf.GGUFValueType.ARRAY else 0
        meta[k] = (int(t), int(at), f.contents())
    tensors = [(t.name, int(t.tensor_type), tuple(int(x) for x in t.shape), int(t.data_offset), int(t.n_bytes))
               for t in r.tensors]
    return meta, tensors


def core_view(path):
    m = CoreModel(path, header_only=True)
    try:
        meta = {k: (t, at, v) for k, t, at, v in m.meta_entries()}
        base = m.data_offset()
        tensors = [(t.name, t.type, t.shape, base + t.offset, t.nbytes) for t in m.tensors()]
        return meta, tensors
    finally:
        m.close()


def assert_same(path):
    rm, rt = reader_view(path)
    cm, ct = core_view(path)
    assert list(cm) == list(rm), "metadata keys (and their order) differ"
    for k in rm:
        assert cm[k][:2] == rm[k][:2], f"{k}: type {cm[k][:2]} vs gguf-py {rm[k][:2]}"
        a, b = cm[k][2], rm[k][2]
        if isinstance(b, float) or (isinstance(b, list) and b and isinstance(b[0], float)):
            assert np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)), k
        else:
            assert a == b, f"{k}: {str(a)[:80]} vs gguf-py {str(b)[:80]}"
    assert ct == rt


def test_default_model_matches_gguf_py(default_model_path):
    assert_same(default_model_path)


def test_shared_vocab_files_match_gguf_py(shared_vocab_dir):
    for p in sorted(shared_vocab_dir.glob("*.gguf")):
        assert_same(p)


def write_all_types(path, alignment=None, n_tensors=3):
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 3.1415927)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 2.718281828459045)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo wörld ✓ 🦙")
    w.add_string("t.empty", "")
    w.add_array("t.arr_i32", [1, -2, 3, -4])
    w.add_array("t.arr_f32", [0.5, -1.25, 1e-30])
    w.add_array("t.arr_str", ["a", "", "βγ", "<|im_start|>"])
    w.add_array("t.arr_bool", [True, False, True])
    w.add_array("t.arr_empty", [])
    rng = np.random.default_rng(0)
    for i in range(n_tensors):
        w.add_tensor(f"w{i}", rng.standard_normal((3 + i, 64)).astype(np.float32))
    w.add_tensor("h", rng.standard_normal((2, 32)).astype(np.float16))
    w.add_tensor("q", gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("alignment", [None, 64, 256])
def test_written_files_match_gguf_py(tmp_path, alignment):
    p = tmp_path / "all.gguf"
    write_all_types(p, alignment)
    assert_same(p)


def test_large_header_is_read_in_steps(tmp_path):
    """A header bigger than the host's first read (1 MiB) is fetched again, larger."""
    p = tmp_path / "big.gguf"
    w = gguf.GGUFWriter(str(p), arch="llama")
    w.add_array("t.many", [f"token-{i:07d}" for i in range(200_000)])  # ~4.6 MB of metadata
    w.add_tensor("w", np.ones((2, 32), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    assert_same(p)


# ------------------------------------------------------------------ hostile files
def expect(path, exc, *words, **kw):
    with pytest.raises(exc) as ei:
        CoreModel(path, **kw).close()
    msg = str(ei.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


def test_wrong_magic(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"GGML" + bytes(100))
    expect(p, ModelFormatError, "bad magic")


def test_empty_and_tiny_files(tmp_path):
    p = tmp_path / "e.gguf"
    p.write_bytes(b"")
    expect(p, ModelFormatError, "empty")
    p.write_bytes(b"GGUF\x03\x00")
    expect(p, ModelFormatError, "truncated")


def test_unsupported_version(tmp_path):
    p = tmp_path / "v.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    expect(p, ModelFormatError, "version 1")


@pytest.mark.parametrize("cut", [30, 200, 5000, 1_000_000, 10_000_000, 60_000_000])
def test_truncated_default_model(tmp_path, default_model_path, cut):
    p = tmp_path / "t.gguf"
    with open(default_model_path, "rb") as f:
        p.write_bytes(f.read(cut))
    msg = expect(p, ModelFormatError)
    assert "truncated" in msg or "past the end" in msg, msg


def _header_offsets(path):
    r = gguf.GGUFReader(path)
    return r


def test_absurd_tensor_count(tmp_path, default_model_path):
    data = bytearray(open(default_model_path, "rb").read(4 << 20))
    data[8:16] = struct.pack("<Q", 2**60)
    p = tmp_path / "c.gguf"
    p.write_bytes(data)
    expect(p, ModelFormatError, "tensor count")


def test_absurd_kv_count(tmp_path, default_model_path):
    data = bytearray(open(default_model_path, "rb").read(4 << 20))
    data[16:24] = struct.pack("<Q", 2**62)
    p = tmp_path / "k.gguf"
    p.write_bytes(data)
    expect(p, ModelFormatError, "metadata count")


def _patch_tensor_info(src, dst, name, dim=None, new_type=None):
    """Rewrite one tensor-info record of a GGUF (dimension 0 or its type)."""
    r = gguf.GGUFReader(src)
    t = next(t for t in r.tensors if t.name == name)
    f = t.field  # the tensor info record: name, n_dims, dims, type, offset
    data = bytearray(open(src, "rb").read())
    dims_off = f.offset + 8 + len(name) + 4
    if dim is not None:
        data[dims_off:dims_off + 8] = struct.pack("<Q", dim)
    if new_type is not None:
        type_off = dims_off + 8 * len(t.shape)
        data[type_off:type_off + 4] = struct.pack("<I", new_type)
    open(dst, "wb").write(data)


def test_absurd_dimension(tmp_path):
    src = tmp_path / "a.gguf"
    write_all_types(src)
    dst = tmp_path / "b.gguf"
    _patch_tensor_info(src, dst, "w1", dim=2**50)
    expect(dst, ModelFormatError, "'w1'", "absurd shape", header_only=True)


def test_unknown_tensor_type(tmp_path):
    src = tmp_path / "a.gguf"
    write_all_types(src)
    dst = tmp_path / "b.gguf"
    _patch_tensor_info(src, dst, "w0", new_type=200)
    expect(dst, ModelFormatError, "'w0'", "unknown ggml type id 200", header_only=True)


def test_type_the_core_cannot_run_is_refused_by_name(tmp_path, default_model_path):
    dst = tmp_path / "iq.gguf"
    _patch_tensor_info(default_model_path, dst, "blk.3.ffn_down.weight", new_type=16)  # IQ2_XXS
    expect(dst, UnsupportedModelError, "blk.3.ffn_down.weight", "IQ2_XXS")


def test_unknown_architecture(tmp_path, default_model_path):
    data = bytearray(open(default_model_path, "rb").read())
    i = data.index(b"general.architecture")
    j = data.index(b"llama", i)
    data[j:j + 5] = b"gemma"
    p = tmp_path / "arch.gguf"
    p.write_bytes(data)
    expect(p, UnsupportedModelError, "architecture 'gemma'")


def test_string_length_larger_than_file(tmp_path, default_model_path):
    data = bytearray(open(default_model_path, "rb").read(2 << 20))
    i = data.index(b"general.architecture")
    # the value follows the key: u32 type (8 = string), then u64 length
    off = i + len(b"general.architecture") + 4
    data[off:off + 8] = struct.pack("<Q", 2**40)
    p = tmp_path / "s.gguf"
    p.write_bytes(data)
    expect(p, ModelFormatError, "larger than the file")


def test_fuzzed_headers_never_crash(tmp_path, shared_vocab_dir):
    """Random corruption of a real header: always a RealmError or a clean load, never a trap."""
    src = (shared_vocab_dir / "ggml-vocab-llama-spm.gguf").read_bytes()
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    p = tmp_path / "f.gguf"
    for i in range(150):
        data = bytearray(src)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(0, 4096) if rng.random() < 0.7 else rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        p.write_bytes(bytes(data))
        try:
            CoreModel(p, vocab_only=True).close()
            outcomes["ok"] += 1
        except RealmError as e:
            assert "trapped" not in str(e), str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0
