"""Realm's tokenizers (realm.wasm) against llama.cpp (llama-cpp-python 0.3.36).

For the default model's vocabulary (SmolLM2: gpt2 BPE, pre-tokenizer "smollm")
and the five shared llama.cpp vocabularies (../shared/vocab), on the corpus of
tests/tokenizer_corpus.py (~400 strings: many scripts, emoji, code, whitespace
runs, numbers, contractions, special-token texts, invalid UTF-8):

  * token ids equal llama_tokenize's for add_special x parse_special;
  * every piece equals llama_token_to_piece(id, lstrip=0, special) and the
    end-of-generation flag equals llama_vocab_is_eog, on a sample of ids
    (both ends of the vocabulary, a stride through it, every id the corpus uses);
  * detokenizing (CoreModel.detokenize, a concatenation of pieces) equals llama.cpp's pieces,
    is lossless wherever llama.cpp's is, and equals llama_detokenize where that
    is a plain concatenation of pieces (no clean_up_tokenization_spaces).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from realm_web.core_model import CoreModel
from tokenizer_corpus import SPECIAL_TEXTS, corpus

SHARED_VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "vocab"
SHARED = ["llama-spm", "phi-3", "llama-bpe", "gpt-2", "qwen2"]
VOCABS = ["default"] + [pytest.param(n, marks=pytest.mark.needs_shared) for n in SHARED]
# llama_detokenize is a plain concatenation of pieces (after SPM's leading-space strip) here;
# gpt-2 and llama-bpe also run clean_up_tokenization_spaces, which Realm's pieces do not.
PLAIN_DETOKENIZE = {"default", "llama-spm", "phi-3", "qwen2"}
SPM = {"llama-spm", "phi-3"}

pytestmark = [pytest.mark.needs_llama_cpp, pytest.mark.slow]

CORPUS = corpus()


def vocab_path(name: str, default_model_path: Path) -> Path:
    if name == "default":
        return default_model_path
    if not SHARED_VOCAB.is_dir():
        pytest.skip(f"{SHARED_VOCAB} is absent (only development checkouts and CI have ../shared)")
    return SHARED_VOCAB / f"ggml-vocab-{name}.gguf"


@pytest.fixture(scope="module")
def models():
    opened: dict[Path, CoreModel] = {}

    def get(path: Path) -> CoreModel:
        if path not in opened:
            opened[path] = CoreModel(path, vocab_only=True)
        return opened[path]

    yield get
    for m in opened.values():
        m.close()


def report(name: str, bad: list[str], total: int) -> str:
    return f"{name}: {len(bad)} of {total} differ:\n  " + "\n  ".join(bad[:12])


def test_corpus_is_big_and_varied():
    assert len(CORPUS) >= 200
    assert any(b"\t" in s for s in CORPUS) and any(b"\r\n" in s for s in CORPUS)
    assert any(s.decode("utf-8", "replace") != s.decode("utf-8", "ignore") for s in CORPUS)  # invalid UTF-8
    assert sum(1 for s in CORPUS if max(s, default=0) >= 0xF0) >= 10  # 4-byte sequences (emoji, ...)


@pytest.mark.parametrize("name", VOCABS)
def test_tokenize_matches_llama(name, default_model_path, llama_ref, models):
    path = vocab_path(name, default_model_path)
    model = models(path)
    bad, total = [], 0
    for text in CORPUS:
        for add_special in (False, True):
            for parse_special in (False, True):
                want = llama_ref.llama_tokenize(path, text, add_special, parse_special)
                got = model.tokenize(text, add_special=add_special, parse_special=parse_special)
                total += 1
                if got != want:
                    bad.append(f"add_special={add_special} parse_special={parse_special} {text!r}\n"
                               f"    llama.cpp {want}\n    realm     {got}")
    assert not bad, report(name, bad, total)


@pytest.mark.parametrize("name", VOCABS)
def test_pieces_and_eog_match_llama(name, default_model_path, llama_ref, models):
    path = vocab_path(name, default_model_path)
    model = models(path)
    n_vocab = model.info.n_vocab
    assert n_vocab == llama_ref.llama_n_vocab(path)
    ids = set(range(min(300, n_vocab))) | set(range(max(0, n_vocab - 300), n_vocab))
    ids |= set(range(0, n_vocab, max(1, n_vocab // 700)))
    for text in CORPUS[::3]:
        ids |= set(model.tokenize(text, add_special=True, parse_special=True))
    # llama_vocab_is_eog is not wrapped by tests/reference.py; use its vocab handle
    lib = llama_ref._llama_cpp()
    vocab = llama_ref._get(path, vocab_only=True).vocab
    bad = []
    for i in sorted(ids):
        for special in (False, True):
            want = llama_ref.llama_token_piece(path, i, special)
            got = model.piece(i, special)
            if got != want:
                bad.append(f"piece({i}, special={special}): llama.cpp {want!r} realm {got!r}")
        want_eog = bool(lib.llama_vocab_is_eog(vocab, i))
        if model.is_eog(i) != want_eog:
            bad.append(f"is_eog({i}): llama.cpp {want_eog} realm {not want_eog}")
    assert not bad, report(name, bad, 3 * len(ids))


@pytest.mark.parametrize("name", VOCABS)
def test_detokenize_round_trip(name, default_model_path, llama_ref, models):
    path = vocab_path(name, default_model_path)
    model = models(path)
    bad, total, n_lossless = [], 0, 0
    pieces: dict[int, tuple[bytes, bytes]] = {}  # id -> (realm, llama.cpp), special=False
    assert model.detokenize([1, 2, 3]) == b"".join(model.piece(i, False) for i in (1, 2, 3))
    for text in CORPUS:
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            continue  # invalid bytes become U+FFFD (BPE): not lossless, by design
        if any(s.encode() in text for s in SPECIAL_TEXTS):
            continue  # user-defined tokens match even without parse_special (and phi-3 strips after them)
        ids = model.tokenize(text, add_special=False, parse_special=False)
        for i in ids:
            if i not in pieces:
                pieces[i] = (model.piece(i, False), llama_ref.llama_token_piece(path, i, False))
        mine = b"".join(pieces[i][0] for i in ids)
        theirs = b"".join(pieces[i][1] for i in ids)
        total += 1
        if mine != theirs:
            bad.append(f"pieces of {ids}: llama.cpp {theirs!r} realm {mine!r}")
        # lossless wherever llama.cpp is (it is not for bytes without a token, e.g. 0x1D in
        # SmolLM2, nor for a literal "▁" in SPM input, which reads back as a space)
        lossless = b" " + text if name in SPM else text  # SPM adds its space prefix
        if theirs == lossless:
            n_lossless += 1
            if mine != lossless:
                bad.append(f"round trip {text!r} -> {ids} -> {mine!r}")
        if name in PLAIN_DETOKENIZE:
            want = llama_ref.llama_detokenize(path, ids)
            if name in SPM and mine[:1] == b" ":
                mine = mine[1:]  # llama_detokenize strips the prefix space of the first piece
            if mine != want:
                bad.append(f"detokenize {ids}: llama.cpp {want!r} realm {mine!r}")
    assert total >= 150 and n_lossless >= total - 5
    assert not bad, report(name, bad, total)
