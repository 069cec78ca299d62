"""The Python API (Realm) and the `realm` CLI on the default model."""
from __future__ import annotations

import subprocess
import sys

import pytest

from realm_web import ContextOverflowError, Realm, RealmError


@pytest.fixture(scope="module")
def realm(default_model_path):
    r = Realm.load(default_model_path, n_ctx=512)
    yield r
    r.close()


def test_greedy_says_paris(realm):
    text = realm.generate("The capital of France is", max_tokens=8, temperature=0)
    assert "Paris" in text


def test_greedy_is_deterministic_and_stream_matches_generate(realm):
    a = realm.generate("Once upon a time", max_tokens=24, temperature=0)
    pieces = list(realm.stream("Once upon a time", max_tokens=24, temperature=0))
    assert len(pieces) > 1
    assert "".join(pieces) == a
    assert realm.last_stats.cached_tokens > 0  # the second call reused the prompt's cache


def test_seed_makes_sampling_reproducible(realm):
    kw = dict(max_tokens=24, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    a = realm.generate("My favourite animal is", seed=42, **kw)
    b = realm.generate("My favourite animal is", seed=42, **kw)
    c = [realm.generate("My favourite animal is", seed=s, **kw) for s in (1, 2, 3)]
    assert a == b
    assert len(set(c + [a])) > 1


def test_max_tokens_and_finish_reasons(realm):
    realm.generate("Count: 1, 2, 3,", max_tokens=5, temperature=0)
    assert realm.last_stats.generated_tokens == 5 and realm.last_stats.finish_reason == "length"
    out = realm.chat([{"role": "user", "content": "Say hi."}], max_tokens=200, temperature=0)
    assert realm.last_stats.finish_reason == "stop" and out  # ended at <|im_end|>


def test_stop_strings_cut_the_text(realm):
    full = realm.generate("The capital of France is", max_tokens=16, temperature=0)
    cut = realm.generate("The capital of France is", max_tokens=16, temperature=0, stop=["."])
    assert "." not in cut and full.startswith(cut) and len(cut) < len(full)
    assert realm.last_stats.finish_reason == "stop"


def test_tokenize_roundtrip(realm):
    text = "Hello, wörld! 🦙 <|im_start|>"
    ids = realm.tokenize(text)
    assert realm.detokenize(ids) == text
    special = realm.tokenize("<|im_start|>user", parse_special=True)
    assert special[0] == 1  # <|im_start|> is one special token in SmolLM2


def test_chat_template_renders_like_llama_cpp_python(realm, default_model_path, llama_ref):
    """The GGUF's Jinja template, rendered by our jinja2 sandbox, equals llama-cpp-python's
    Jinja2ChatFormatter output for the same messages."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    meta = realm.metadata()
    tokens = meta["tokenizer.ggml.tokens"]
    fmt = Jinja2ChatFormatter(template=meta["tokenizer.chat_template"],
                              eos_token=tokens[meta["tokenizer.ggml.eos_token_id"]],
                              bos_token=tokens[meta["tokenizer.ggml.bos_token_id"]])
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is 2+2?"}]
    assert realm.apply_chat_template(msgs) == fmt(messages=msgs).prompt


def test_prompt_past_the_context_is_refused_and_the_session_survives(default_model_path):
    r = Realm.load(default_model_path, n_ctx=64)
    with pytest.raises(ContextOverflowError, match="64"):
        r.generate("word " * 200, max_tokens=4)
    with pytest.raises(ContextOverflowError, match="context full"):
        r.session.eval(list(range(100, 180)))
    with pytest.raises(RealmError, match="out of range"):
        r.session.eval([10**6])
    assert "Paris" in r.generate("The capital of France is", max_tokens=6, temperature=0)
    # generation that runs into the end of the context stops with "length"
    r.generate("Tell me a story.", max_tokens=500, temperature=0, ignore_eos=True)
    assert r.last_stats.finish_reason == "length" and r.session.n_past <= 64
    r.close()


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RealmError, match="no such model file"):
        Realm.load(tmp_path / "nope.gguf")


def test_cli_run_streams_paris():
    res = subprocess.run([sys.executable, "-m", "realm_web.cli", "run", "-p", "The capital of France is",
                          "-n", "8", "--temp", "0"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Paris" in res.stdout
    assert "tok/s" in res.stderr


def test_cli_reports_bad_files_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    res = subprocess.run([sys.executable, "-m", "realm_web.cli", "run", str(bad), "-n", "1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "bad magic" in res.stderr and "Traceback" not in res.stderr


def test_closed_session_refuses_every_call(default_model_path):
    """A closed Session must not hand handle 0 to the core: each method raises RealmError."""
    from realm_web import store
    from realm_web.core_model import Session
    from realm_web.sampling import SamplerSettings
    m = store.acquire(default_model_path)
    try:
        s = Session(m, 64)
        s.eval([1, 2, 3])
        s.close()
        s.close()                                           # idempotent
        assert s.closed
        calls = {"n_past": lambda: s.n_past, "tokens": s.tokens, "truncate": lambda: s.truncate(0),
                 "eval": lambda: s.eval([1]), "logits": s.logits, "set_sampler": lambda: s.set_sampler(SamplerSettings()),
                 "sample": s.sample, "step": lambda: s.step(1), "embed": lambda: s.embed([1, 2]),
                 "embed_begin": s.embed_begin, "embed_add": lambda: s.embed_add([1]), "embed_end": s.embed_end}
        for name, call in calls.items():
            with pytest.raises(RealmError, match="session is closed"):
                call()
        r = Realm(store.acquire(default_model_path), n_ctx=64)
        r.close()
        with pytest.raises(RealmError, match="session is closed"):
            r.generate("Hi", max_tokens=2)
    finally:
        store.release(m)


def test_python_api_and_cli_default_to_llama_cpp_sampling():
    """Realm's and `realm run`'s sampling defaults are the LLAMA_CPP table (no copies elsewhere)."""
    import inspect

    from realm_web.cli import _add_sampling
    from realm_web.sampling import LLAMA_CPP, SamplerSettings
    assert dict(LLAMA_CPP) == dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                                   repeat_last_n=64, frequency_penalty=0.0, presence_penalty=0.0)
    params = inspect.signature(Realm.generate_tokens).parameters
    assert {k: params[k].default for k in LLAMA_CPP} == dict(LLAMA_CPP)
    assert {k: getattr(SamplerSettings(), k) for k in LLAMA_CPP} == dict(LLAMA_CPP)
    import argparse
    p = argparse.ArgumentParser()
    _add_sampling(p)
    a = p.parse_args([])
    cli = dict(temperature=a.temp, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p, repeat_penalty=a.repeat_penalty,
               repeat_last_n=a.repeat_last_n, frequency_penalty=a.frequency_penalty,
               presence_penalty=a.presence_penalty)
    assert cli == dict(LLAMA_CPP)
