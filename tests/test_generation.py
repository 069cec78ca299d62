"""realm_web.generation (the state machine Realm and the server both drive),
realm_web.sampling (the default tables and the OpenAI mapping) and the chat BOS
rule, on a scripted vocabulary: every rule is checked without a model."""
from __future__ import annotations

import pytest

from realm_web import chat
from realm_web.generation import DECODE, DONE, PREFILL, Generation, advance
from realm_web.sampling import LLAMA_CPP, OPENAI, GenerationOptions, SamplerSettings, from_openai

EOG = 0
PIECES = {1: b"He", 2: b"llo", 3: b" wor", 4: b"ld", 5: b".", 6: "é".encode()[:1], 7: "é".encode()[1:], 8: b"!"}


class FakeVocab:
    def piece(self, tok):
        return PIECES.get(tok, b"?")

    def is_eog(self, tok):
        return tok == EOG


def run(tokens, prompt=(10, 11, 12), n_ctx=64, chunk=None, **opts):
    """Drive a Generation with the model 'sampling' `tokens` in turn; returns (gen, text, evaluated)."""
    gen = Generation(FakeVocab(), prompt, n_ctx, GenerationOptions(**opts))
    it, text, evaluated = iter(tokens), "", []
    while not gen.done:
        ids = gen.next_ids(chunk)
        evaluated.append(ids)
        if gen.fed(len(ids)):
            text += gen.accept(next(it))
    return gen, text, evaluated


def test_max_tokens_ends_with_length_without_evaluating_the_last_token():
    gen, text, ev = run([1, 2, 3, 4, 5], max_tokens=3)
    assert (text, gen.finish_reason, gen.stats.generated_tokens, gen.stats.tokens) == ("Hello wor", "length", 3, [1, 2, 3])
    assert ev == [[10, 11, 12], [1], [2]]          # the prompt, then each accepted token but the last
    assert gen.next_ids() == [] and gen.phase == DONE


def test_end_of_generation_stops_and_is_not_counted():
    gen, text, _ = run([1, 2, EOG, 3])
    assert (text, gen.finish_reason, gen.stats.tokens) == ("Hello", "stop", [1, 2])
    gen, text, _ = run([1, EOG, 2], max_tokens=3, ignore_eos=True)
    assert gen.finish_reason == "length" and gen.stats.tokens == [1, EOG, 2]


def test_max_tokens_zero_and_unlimited():
    gen, text, _ = run([1], max_tokens=0)
    assert (text, gen.finish_reason, gen.stats.generated_tokens) == ("", "length", 0)
    gen, _, _ = run([1] * 100, n_ctx=8, max_tokens=None)   # None: until the context is full
    assert gen.finish_reason == "length" and gen.n_past == 8 and gen.stats.generated_tokens == 6


def test_stop_string_across_tokens_is_held_back_and_cut():
    gen = Generation(FakeVocab(), [10], 64, GenerationOptions(stop=["lo w"]))
    gen.fed(len(gen.next_ids()))
    assert gen.accept(1) == "He"
    assert gen.accept(2) == "l"                      # "lo" could start "lo w": held back
    gen.fed(1)
    assert gen.accept(3) == "" and gen.done and gen.finish_reason == "stop"
    gen, text, _ = run([1, 2, 5], stop=["xyz"], max_tokens=3)
    assert text == "Hello." and gen.finish_reason == "length"   # the held-back tail comes out at the end


def test_utf8_split_across_tokens_comes_out_whole():
    gen = Generation(FakeVocab(), [10], 64)
    gen.fed(len(gen.next_ids()))
    assert gen.accept(6) == ""
    gen.fed(1)
    assert gen.accept(7) == "é"


def test_context_full_ends_with_length():
    gen, text, ev = run([1, 2, 3, 4, 5], prompt=[10, 11, 12], n_ctx=5)
    assert gen.finish_reason == "length" and gen.stats.tokens == [1, 2, 3] and gen.n_past == 5


def test_prefill_in_chunks_and_prefix_reuse():
    gen = Generation(FakeVocab(), list(range(20, 30)), 64, GenerationOptions(max_tokens=1))
    assert gen.reuse([20, 21, 22, 99]) == 3 and gen.stats.cached_tokens == 3
    assert gen.next_ids(4) == [23, 24, 25, 26]
    assert gen.fed(4) is False and gen.phase == PREFILL
    assert gen.next_ids(4) == [27, 28, 29]
    assert gen.fed(3) is True and gen.phase == DECODE
    # a cache holding the whole prompt still re-evaluates its last token (fresh logits)
    gen = Generation(FakeVocab(), [1, 2, 3], 64)
    assert gen.reuse([1, 2, 3, 4, 5]) == 2 and gen.next_ids() == [3]


def test_advance_drives_a_session_eval_sample_then_step():
    calls = []

    class FakeSession:
        def eval(self, ids):
            calls.append(("eval", list(ids)))

        def sample(self):
            calls.append(("sample",))
            return 1

        def step(self, tok):
            calls.append(("step", tok))
            return {1: 2, 2: EOG}[tok]

    gen = Generation(FakeVocab(), [10, 11, 12], 64)
    out = ""
    while not gen.done:
        out += advance(gen, FakeSession(), max_chunk=2)
    assert out == "Hello" and gen.finish_reason == "stop"
    assert calls == [("eval", [10, 11]), ("eval", [12]), ("sample",), ("step", 1), ("step", 2)]


def test_the_default_tables():
    assert dict(OPENAI) == dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                repeat_last_n=64, frequency_penalty=0.0, presence_penalty=0.0)
    assert SamplerSettings.of(LLAMA_CPP, seed=1) == SamplerSettings(seed=1)
    with pytest.raises(TypeError, match="tempreature"):
        SamplerSettings.of(LLAMA_CPP, tempreature=0.5)


def test_from_openai_maps_a_request_body():
    s, o = from_openai({})
    assert {k: getattr(s, k) for k in OPENAI} == dict(OPENAI)
    assert o == GenerationOptions(max_tokens=None, stop=[])
    body = {"temperature": 0, "top_p": 0.5, "top_k": 7.0, "min_p": 0.1, "repeat_penalty": 1.1, "repeat_last_n": 32,
            "frequency_penalty": 0.5, "presence_penalty": -0.5, "seed": 42, "max_tokens": 9,
            "max_completion_tokens": 5, "stop": ["", "\n"]}
    s, o = from_openai(body, max_tokens_key="max_completion_tokens")
    assert s == SamplerSettings(temperature=0.0, top_p=0.5, top_k=7, min_p=0.1, repeat_penalty=1.1, repeat_last_n=32,
                                frequency_penalty=0.5, presence_penalty=-0.5, seed=42)
    assert type(s.top_k) is int and o == GenerationOptions(max_tokens=5, stop=["\n"])
    assert from_openai({"max_tokens": 9}, max_tokens_key="max_completion_tokens")[1].max_tokens == 9
    assert from_openai({"stop": "x"}, default_max_tokens=16)[1] == GenerationOptions(max_tokens=16, stop=["x"])
    assert from_openai({"seed": None})[0].seed != from_openai({"seed": -1})[0].seed   # random seeds


def test_server_schemas_use_the_openai_mapping():
    from realm_web.server.schemas import parse_chat, parse_completion
    chat_req = parse_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 3})
    assert chat_req.sampling.settings == from_openai({"seed": 3})[0]
    assert chat_req.sampling.max_tokens is None
    comp = parse_completion({"model": "m", "prompt": "x", "seed": 3})
    assert comp.sampling.max_tokens == 16                     # OpenAI's default for completions


class FakeModel:
    def __init__(self, ids, add_bos, bos=1):
        self.ids, self.calls = ids, []
        self.info = type("Info", (), {"add_bos": add_bos, "bos": bos})()

    def tokenize(self, text, add_special, parse_special):
        self.calls.append((text, add_special, parse_special))
        return list(self.ids)


def test_chat_bos_rule():
    m = FakeModel([5, 6], add_bos=True)
    assert chat.prompt_ids(m, "<t>") == [1, 5, 6] and m.calls == [("<t>", False, True)]
    assert chat.prompt_ids(FakeModel([1, 5], add_bos=True), "x") == [1, 5]     # the template wrote BOS
    assert chat.prompt_ids(FakeModel([5, 6], add_bos=False), "x") == [5, 6]
    assert chat.prompt_ids(FakeModel([], add_bos=True), "") == [1]
    assert chat.prompt_ids(FakeModel([5], add_bos=True, bos=-1), "x") == [5]   # no BOS in the vocab
