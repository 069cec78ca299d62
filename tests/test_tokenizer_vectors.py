"""llama.cpp's own tokenizer test vectors (../shared/vocab), through realm.wasm.

Each ggml-vocab-X.gguf comes with X.gguf.inp (test strings separated by lines
"__ggml_vocab_test__") and X.gguf.out (one line of token ids per string).
llama.cpp's tests/test-tokenizer-0 tokenizes with add_special=false and
parse_special=false; so do we, and the ids must match exactly.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from realm_web.core_model import CoreModel

VOCAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "vocab"
VOCABS = ["llama-spm", "phi-3", "llama-bpe", "gpt-2", "qwen2"]
SEP = b"\n__ggml_vocab_test__\n"

pytestmark = pytest.mark.needs_shared


def read_vectors(gguf_path: Path) -> list[tuple[bytes, list[int]]]:
    """(text, ids) pairs, split exactly as test-tokenizer-0.cpp splits them (bytes, no newline translation)."""
    raw = Path(str(gguf_path) + ".inp").read_bytes()
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    lines = Path(str(gguf_path) + ".out").read_bytes().decode().split("\n")
    assert len(lines) >= len(texts), f"{gguf_path}: fewer .out lines than .inp tests"
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


@pytest.fixture(scope="module")
def vocab_dir() -> Path:
    if not VOCAB_DIR.is_dir():
        pytest.skip(f"{VOCAB_DIR} is absent (only development checkouts and CI have ../shared)")
    return VOCAB_DIR


@pytest.mark.parametrize("name", VOCABS)
def test_llama_cpp_vectors(vocab_dir, name):
    path = vocab_dir / f"ggml-vocab-{name}.gguf"
    vectors = read_vectors(path)
    assert len(vectors) >= 40
    model = CoreModel(path, vocab_only=True)
    try:
        bad = []
        for text, want in vectors:
            got = model.tokenize(text, add_special=False, parse_special=False)
            if got != want:
                bad.append(f"{text!r}\n    llama.cpp {want}\n    realm     {got}")
    finally:
        model.close()
    assert not bad, f"{name}: {len(bad)} of {len(vectors)} vectors differ:\n  " + "\n  ".join(bad[:10])
