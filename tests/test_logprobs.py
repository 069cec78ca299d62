"""Log-probabilities recorded by the core's sampler (realm_session_set_logprobs /
realm_session_logprobs): the log-softmax of the logits the sampler starts from (after
penalties, temperature 1), checked against numpy; the same through a batched step."""
from __future__ import annotations

import numpy as np
import pytest

from realm_web.core_model import CoreModel, SamplerSettings, Session
from realm_web.errors import RealmError


@pytest.fixture(scope="module")
def model(default_model_path):
    m = CoreModel(str(default_model_path))
    yield m
    m.close()


def _log_softmax(row):
    x = np.asarray(row, dtype=np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def _top(ref, k):
    order = sorted(range(len(ref)), key=lambda i: (-ref[i], i))[:k]
    return order


@pytest.mark.parametrize("temperature,seed", [(0.0, 0), (0.9, 4)])
def test_logprobs_equal_log_softmax(model, temperature, seed):
    s = Session(model, 256)
    ids = model.tokenize("The capital of France is", add_special=True)
    s.set_sampler(SamplerSettings(temperature=temperature, top_k=40, top_p=0.9, seed=seed))
    s.set_logprobs(5)
    s.eval(ids)
    ref = _log_softmax(s.logits()[-1])
    tok = s.sample()
    lp = s.logprobs()
    assert len(lp) == 6 and lp[0][0] == tok
    assert lp[0][1] == pytest.approx(ref[tok], abs=1e-5)
    assert [i for i, _ in lp[1:]] == _top(ref, 5)
    assert [v for _, v in lp[1:]] == pytest.approx([ref[i] for i in _top(ref, 5)], abs=1e-5)
    if temperature == 0:
        assert lp[1][0] == tok                         # greedy: the sampled token is the most likely
    assert sum(np.exp(v) for _, v in lp[1:]) <= 1 + 1e-6
    s.close()


def test_logprobs_after_penalties_and_off_by_default(model):
    s = Session(model, 256)
    ids = model.tokenize("the the the the the", add_special=True)
    s.set_sampler(SamplerSettings(temperature=0, repeat_penalty=1.5, repeat_last_n=64, frequency_penalty=0.5))
    s.eval(ids)
    assert s.logprobs() == []                           # off until asked
    raw = s.logits()[-1].astype(np.float64)
    s.set_logprobs(0)
    tok = s.sample()
    (t0, v0), = s.logprobs()
    pen = raw.copy()
    for t in set(ids):                                  # llama.cpp's penalties, as the core applies them
        pen[t] = pen[t] * 1.5 if pen[t] <= 0 else pen[t] / 1.5
        pen[t] -= ids.count(t) * 0.5
    assert t0 == tok == int(np.argmax(pen))
    assert v0 == pytest.approx(_log_softmax(pen)[tok], abs=1e-4)
    for bad in (-2, 21, 1000):
        with pytest.raises(RealmError, match="top logprobs must be -1"):
            s.set_logprobs(bad)
    s.set_logprobs(None)
    s.sample()
    assert s.logprobs() == []
    s.close()


def test_batched_step_records_each_sessions_logprobs(model):
    prompts = ["The capital of France is", "Water boils at", "Once upon a time"]
    alone = []
    for p in prompts:
        s = Session(model, 128)
        s.set_logprobs(3)
        s.eval(model.tokenize(p, add_special=True))
        s.sample()
        alone.append(s.logprobs())
        s.close()
    ss = [Session(model, 128) for _ in prompts]
    for s in ss:
        s.set_logprobs(3)
    out = model.step_batch(ss, [model.tokenize(p, add_special=True) for p in prompts])
    for s, o, a in zip(ss, out, alone):
        assert s.logprobs() == a and a[0][0] == o
        s.close()


def test_realm_records_each_tokens_logprobs(default_model_path):
    """Realm.generate(logprobs=k): last_stats.logprobs per generated token, equal to the
    log-softmax of the teacher-forced logits; greedy: the top entry is the token."""
    from realm_web import Realm
    r = Realm.load(default_model_path, n_ctx=256, speculative="ngram")   # (logprobs turn speculation off)
    try:
        prompt = r.tokenize("The three primary colours are")
        text = r.generate(prompt, max_tokens=6, temperature=0, logprobs=2)
        lps = r.last_stats.logprobs
        ids = r.last_stats.tokens
        assert len(lps) == len(ids) == r.last_stats.generated_tokens and r.detokenize(ids) == text
        s = Session(r.model, 256)
        s.eval(prompt + ids, all_logits=True)
        rows = s.logits()
        s.close()
        for k, (tok, lp, top) in enumerate(lps):
            want = _log_softmax(rows[len(prompt) - 1 + k])
            assert tok == ids[k] == top[0][0] and len(top) == 2
            assert lp == pytest.approx(want[tok], abs=1e-4)
        r.generate(prompt, max_tokens=3, temperature=0)
        assert r.last_stats.logprobs == []                     # off again
    finally:
        r.close()
