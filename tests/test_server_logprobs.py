"""logprobs / top_logprobs and n > 1 through the real openai client (issue 14, part):
log-probabilities checked against llama.cpp's logits for the same tokens; choices of n
reproducible by seed, identical when greedy; bad values refused by name."""
from __future__ import annotations

import math

import numpy as np
import openai
import pytest

from server_helpers import start_thread_server


@pytest.fixture(scope="module")
def server(default_model_path):
    srv = start_thread_server(no_auth=True, models=[("smol", str(default_model_path))])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def test_completion_logprobs_match_the_logits(client, default_model_path, llama_ref):
    """The server's logprobs are the log-softmax of the core's logits for those tokens (exactly:
    teacher-forced in one eval), and as close to llama.cpp's as the two forward passes are."""
    from realm_web.core_model import CoreModel, Session
    prompt = llama_ref.llama_tokenize(default_model_path, "The three primary colours are", add_special=True)
    r = client.completions.create(model="smol", prompt=prompt, max_tokens=8, temperature=0, logprobs=5)
    ch = r.choices[0]
    lp = ch.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens == 8
    assert "".join(lp.tokens) == ch.text and lp.text_offset[0] == 0
    m = CoreModel(str(default_model_path))
    try:
        s = Session(m, 256)
        s.eval(prompt)
        gen = []
        for _ in range(8):                     # greedy, as the server (its steps give the same bits)
            gen.append(int(np.argmax(s.logits()[-1])))
            s.eval(gen[-1:])
        assert [m.piece(t, special=False).decode("utf-8", "replace") for t in gen] == lp.tokens
        s2 = Session(m, 256)
        s2.eval(prompt + gen, all_logits=True)
        ours = s2.logits()
        pieces = {m.piece(t, special=False).decode("utf-8", "replace"): t for t in range(m.info.n_vocab)}
    finally:
        m.close()
    ref = llama_ref.llama_logits(default_model_path, prompt + gen, all_steps=True)
    diffs = []
    for k in range(8):
        row = len(prompt) - 1 + k
        mine, theirs = _log_softmax(ours[row]), _log_softmax(ref[row])
        assert lp.token_logprobs[k] == pytest.approx(mine[gen[k]], abs=1e-4)
        top = lp.top_logprobs[k]
        assert len(top) == 5 and max(top.values()) == pytest.approx(lp.token_logprobs[k])   # greedy: the top one
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-6
        for tok, v in top.items():
            assert v == pytest.approx(mine[pieces[tok]], abs=1e-4)
        diffs.append(abs(lp.token_logprobs[k] - theirs[gen[k]]))
        srt = np.sort(theirs)
        if srt[-1] - srt[-2] > 0.5:                          # llama.cpp picks the same token where it is clear
            assert int(np.argmax(theirs)) == gen[k]
    # realm vs llama.cpp on this Q4_1 model: log-probabilities differ by a few 0.01 to 0.1 (seen: mean 0.07)
    assert np.mean(diffs) < 0.1 and max(diffs) < 0.3, diffs


def test_chat_logprobs_stream_and_whole_agree(client):
    body = dict(model="smol", messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=10,
                temperature=0.8, seed=42, logprobs=True, top_logprobs=3)
    whole = client.chat.completions.create(**body)
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens
    assert "".join(t.token for t in content) == whole.choices[0].message.content
    for t in content:
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
        assert len(t.top_logprobs) == 3 and t.logprob <= t.top_logprobs[0].logprob + 1e-6
        assert [x.logprob for x in t.top_logprobs] == sorted((x.logprob for x in t.top_logprobs), reverse=True)
    streamed = []
    for ch in client.chat.completions.create(stream=True, **body):
        for c in ch.choices:
            if c.logprobs and c.logprobs.content:
                streamed += c.logprobs.content
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
    off = client.chat.completions.create(**{k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")})
    assert off.choices[0].logprobs is None and off.choices[0].message.content == whole.choices[0].message.content


def test_n_choices(client):
    body = dict(model="smol", prompt="Once upon a time", max_tokens=12, temperature=0.9, seed=7)
    three = client.completions.create(n=3, **body)
    assert [c.index for c in three.choices] == [0, 1, 2]
    texts = [c.text for c in three.choices]
    assert len(set(texts)) > 1                                    # independent draws
    assert texts[0] == client.completions.create(**body).choices[0].text   # choice 0 is n=1's
    assert [c.text for c in client.completions.create(n=3, **body).choices] == texts   # reproducible
    one = client.completions.create(**body)
    assert three.usage.prompt_tokens == one.usage.prompt_tokens and three.usage.completion_tokens == 36 \
        or three.usage.completion_tokens <= 36                   # 12 each unless one ends early
    greedy = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], n=3,
                                            max_tokens=6, temperature=0)
    assert len({c.message.content for c in greedy.choices}) == 1 and len(greedy.choices) == 3
    single = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=6, temperature=0)
    assert greedy.usage.completion_tokens == 3 * single.usage.completion_tokens
    assert greedy.usage.prompt_tokens == single.usage.prompt_tokens
    # streamed: every choice's chunks, each ending with its finish reason
    got = {0: "", 1: ""}
    fins = {}
    for ch in client.completions.create(n=2, stream=True, **body):
        for c in ch.choices:
            got[c.index] += c.text
            if c.finish_reason:
                fins[c.index] = c.finish_reason
    assert [got[0], got[1]] == texts[:2] and set(fins) == {0, 1}


@pytest.mark.parametrize("endpoint,extra,param", [
    ("completions", {"n": 0}, "n"),
    ("completions", {"n": 17}, "n"),
    ("completions", {"logprobs": 6}, "logprobs"),
    ("completions", {"n": 2, "best_of": 3}, "best_of"),
    ("chat", {"top_logprobs": 2}, "top_logprobs"),
    ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("chat", {"logprobs": 3}, "logprobs"),
])
def test_bad_values_are_400s_naming_the_field(client, endpoint, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        if endpoint == "chat":
            client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                           **extra)
        else:
            client.completions.create(model="smol", prompt="Hi", max_tokens=2, **extra)
    assert e.value.body["param"] == param


# ------------------------------------------------------------ constrained output (issue 14)
def test_response_format_json_object_always_parses(client):
    import json
    for seed in (1, 2, 3):
        r = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Describe a cat as JSON."}],
                                           max_tokens=60, temperature=0.9, seed=seed,
                                           response_format={"type": "json_object"})
        c = r.choices[0]
        if c.finish_reason == "stop":                  # complete: it parses, and is an object
            assert isinstance(json.loads(c.message.content), dict)
        else:                                          # cut by max_tokens: a prefix of an object
            assert c.message.content.lstrip().startswith("{")


def test_grammar_field_constrains_completions_and_streams(client):
    g = 'root ::= ("yes" | "no") "."'
    for seed in range(4):
        r = client.completions.create(model="smol", prompt="Is water wet? Answer:", max_tokens=8, temperature=1.0,
                                      seed=seed, extra_body={"grammar": g})
        assert r.choices[0].text in ("yes.", "no.") and r.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model="smol", prompt="Is water wet? Answer:", max_tokens=8, temperature=0, stream=True,
        extra_body={"grammar": g}) if ch.choices)
    assert streamed in ("yes.", "no.")
    # a pooled session that had a grammar runs free again for the next request
    free = client.completions.create(model="smol", prompt="Is water wet? Answer:", max_tokens=8, temperature=0)
    assert free.choices[0].text not in ("yes.", "no.")


@pytest.mark.parametrize("extra,param,words", [
    ({"grammar": "root ::= undefined-rule"}, "grammar", "undefined"),
    ({"grammar": "root ::= (\"a\""}, "grammar", "line 1"),
    ({"grammar": 5}, "grammar", "string"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
     "response_format.json_schema.schema", "unknown type 'strin'"),
    ({"response_format": {"type": "json_object"}, "grammar": "root ::= \"a\""}, "grammar", "either"),
])
def test_bad_grammars_are_400s(client, extra, param, words):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       extra_body=extra)
    assert e.value.body["param"] == param and words in e.value.body["message"]
