"""Speculative decoding (core/speculative.c, realm_web/speculative.py): the output
equals plain decoding token for token, greedy and seeded, for prompt-lookup and
draft-model drafting; drafts only change how many tokens one pass yields.

Plain decoding here is one realm_session_step per token, the path every host used
before; the references for the drafting rule are written out in Python below."""
from __future__ import annotations

import pytest

from realm_web import Realm
from realm_web.core_model import SamplerSettings
from realm_web.errors import RealmError
from realm_web.speculative import ModelDrafter, NgramDrafter, Speculator, make_speculator

QUOTE = ("def stop_filter(text, stops):\n    for s in stops:\n        i = text.find(s)\n"
         "        if i >= 0:\n            return text[:i]\n    return text\n")
PROMPT = f"Copy this code exactly.\n\n{QUOTE}\nThe copy:\n\n{QUOTE[:40]}"


@pytest.fixture(scope="module")
def realm(default_model_path):
    r = Realm.load(default_model_path, n_ctx=1024, threads=1)
    yield r
    r.close()


def _decode(r, ids, n, spec=None, temperature=0.0, seed=1, top_k=40, repeat_penalty=1.0):
    s = r.session
    s.truncate(0)
    s.set_sampler(SamplerSettings(temperature=temperature, seed=seed, top_k=top_k, repeat_penalty=repeat_penalty))
    s.eval(ids)
    out = [s.sample()]
    while len(out) < n:
        out.extend(spec.step(s, out[-1], n - len(out)) if spec else [s.step(out[-1])])
        assert len(out) <= n
    return out


@pytest.mark.parametrize("temperature,seed,penalty", [(0.0, 1, 1.0), (0.9, 7, 1.0), (0.7, 3, 1.15)])
def test_ngram_speculation_is_exact(realm, temperature, seed, penalty):
    ids = realm.tokenize(PROMPT)
    plain = _decode(realm, ids, 120, temperature=temperature, seed=seed, repeat_penalty=penalty)
    spec = Speculator(NgramDrafter(), timed=False)  # drafts however the clock goes: they must be verified
    fast = _decode(realm, ids, 120, spec, temperature=temperature, seed=seed, repeat_penalty=penalty)
    assert fast == plain
    st = spec.stats
    assert st.steps > 0 and st.drafted > 0, st.as_dict()  # drafts were really verified
    if temperature == 0.0:
        assert st.accepted >= 0.5 * st.drafted, st.as_dict()  # a quoting task: most drafts hold


def test_verify_accepts_a_correct_draft_and_stops_at_a_wrong_one(realm):
    ids = realm.tokenize("The capital of France is")
    truth = _decode(realm, ids, 6)
    s = realm.session
    s.truncate(0)
    s.set_sampler(SamplerSettings(temperature=0.0))
    s.eval(ids)
    assert s.sample() == truth[0]
    n0 = s.n_past
    out = s.verify([truth[0]] + truth[1:4])              # three right drafts: all taken, one more
    assert out == truth[1:5] and s.n_past == n0 + 4
    wrong = (truth[5] + 1) % realm.info.n_vocab
    out = s.verify([truth[4], wrong, truth[5]])          # the first draft is wrong
    assert out == [truth[5]] and s.n_past == n0 + 5       # the cache keeps only what was accepted
    assert s.tokens() == ids + truth[:5]


def _ngram_reference(seq, nmin, nmax, k):
    L = len(seq)
    for n in range(min(nmax, L - 1), nmin - 1, -1):
        pat = seq[L - n:]
        for j in range(L - n - 1, -1, -1):
            if seq[j:j + n] == pat:
                return seq[j + n:j + n + k]
    return []


def test_prompt_lookup_drafts_match_a_reference(realm):
    import random
    rng = random.Random(5)
    s = realm.session
    for trial in range(40):
        seq = [rng.randrange(6) for _ in range(rng.randrange(2, 60))]
        s.truncate(0)
        s.eval(seq[:-1])
        for nmin, nmax, k in ((1, 3, 5), (2, 4, 8), (3, 3, 2)):
            assert s.draft_ngram(seq[-1], nmin, nmax, k) == _ngram_reference(seq, nmin, nmax, k), (seq, nmin, nmax)


def test_draft_model_speculation_is_exact(realm, requantized, synthetic_model):
    ids = realm.tokenize(PROMPT)
    for draft in (requantized("Q8_0"), synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2)):
        for temperature, seed in ((0.0, 1), (0.8, 11)):
            plain = _decode(realm, ids, 48, temperature=temperature, seed=seed)
            spec = Speculator(ModelDrafter(realm.model, draft, realm.n_ctx, threads=1), k_max=6, timed=False)
            try:
                fast = _decode(realm, ids, 48, spec, temperature=temperature, seed=seed)
            finally:
                spec.close()
            assert fast == plain, (draft.name, temperature)
            assert spec.stats.drafted > 0


def test_a_draft_model_with_another_vocabulary_is_refused(realm, synthetic_model):
    other = synthetic_model(n_layer=1, n_embd=128, n_ff=256, n_head=2, n_head_kv=1, n_vocab=1000)
    with pytest.raises(RealmError, match="vocabulary has 1000 tokens, the target's 49152"):
        ModelDrafter(realm.model, other, 256)
    with pytest.raises(RealmError, match="unknown speculative mode"):
        make_speculator("magic", realm.model, 256)
    with pytest.raises(RealmError, match="needs draft_model"):
        make_speculator("draft", realm.model, 256)


def test_bad_verify_calls_are_errors_and_leave_the_session_usable(realm):
    s = realm.session
    s.truncate(0)
    s.set_sampler(SamplerSettings(temperature=0.0))
    with pytest.raises(RealmError, match="needs at least the last sampled token"):
        s.verify([])
    with pytest.raises(RealmError):
        s.verify([realm.info.n_vocab + 5])  # a bad id: refused before anything is written
    assert s.n_past == 0
    assert realm.generate("The capital of France is", max_tokens=4, temperature=0).strip().startswith("Paris")


def test_adaptive_pause_after_poor_acceptance(realm):
    """Drafts that keep failing pause drafting (plain steps), so free text is not slowed."""
    class Wrong(NgramDrafter):
        def draft(self, session, last, k):
            return [(last + 1) % 49152] * k  # never what the model samples next (almost surely)
    spec = Speculator(Wrong(), k_max=4, timed=False)
    ids = realm.tokenize("Once upon a time")
    plain = _decode(realm, ids, 60)
    assert _decode(realm, ids, 60, spec) == plain
    assert spec.stats.plain_steps > spec.stats.steps, spec.stats.as_dict()


def test_realm_api_speculative_equals_plain(default_model_path):
    """Realm.load(speculative=...): generate/stream/chat give the plain Realm's text; stats are reported."""
    plain = Realm.load(default_model_path, n_ctx=1024, threads=1)
    fast = Realm.load(default_model_path, n_ctx=1024, threads=1, speculative="ngram")
    try:
        for kw in (dict(temperature=0), dict(temperature=0.8, seed=5), dict(temperature=0, stop=["return"])):
            a = plain.generate(PROMPT, max_tokens=80, **kw)
            b = fast.generate(PROMPT, max_tokens=80, **kw)
            assert a == b, kw
            assert fast.last_stats.finish_reason == plain.last_stats.finish_reason
            assert fast.last_stats.generated_tokens == plain.last_stats.generated_tokens
        st = fast.last_stats.speculative
        assert st is not None and 0 <= st.accepted <= st.drafted and st.steps + st.plain_steps > 0
        ids_a = list(plain.generate_tokens(PROMPT, max_tokens=50, temperature=0))
        ids_b = list(fast.generate_tokens(PROMPT, max_tokens=50, temperature=0))
        assert ids_a == ids_b and len(ids_b) == 50
        msgs = [{"role": "user", "content": "Repeat exactly: " + QUOTE}]
        assert plain.chat(msgs, max_tokens=60, temperature=0) == fast.chat(msgs, max_tokens=60, temperature=0)
    finally:
        plain.close()
        fast.close()
    with pytest.raises(RealmError, match="needs draft_model"):
        Realm.load(default_model_path, n_ctx=64, speculative="draft")


def test_server_speculative_equals_plain(default_model_path):
    """realm serve --speculative ngram: the same completions as a plain server (greedy and
    seeded, streamed too), drafts counted in /metrics; a bad mode is refused at start-up."""
    import openai
    from server_helpers import metric, start_thread_server
    plain = start_thread_server(no_auth=True, models=[("m", str(default_model_path))], threads=1)
    fast = start_thread_server(no_auth=True, models=[("m", str(default_model_path))], threads=1,
                               speculative="ngram")
    try:
        outs = []
        for srv in (plain, fast):
            c = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=120)
            got = []
            for kw in (dict(temperature=0), dict(temperature=0.8, seed=9)):
                r = c.completions.create(model="m", prompt=PROMPT, max_tokens=60, **kw)
                got.append((r.choices[0].text, r.choices[0].finish_reason, r.usage.completion_tokens))
            stream = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Repeat: " + QUOTE}],
                                               max_tokens=50, temperature=0, stream=True)
            got.append("".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices))
            outs.append(got)
        assert outs[0] == outs[1]
        drafted = metric(fast.url, "realm_speculative_drafted_tokens_total", model="m")
        assert 0 <= metric(fast.url, "realm_speculative_accepted_tokens_total", model="m") <= drafted
        assert metric(fast.url, "realm_generated_tokens_total", model="m") == \
            metric(plain.url, "realm_generated_tokens_total", model="m")
    finally:
        plain.stop()
        fast.stop()
    with pytest.raises(Exception, match="unknown speculative mode"):
        start_thread_server(no_auth=True, models=[("m", str(default_model_path))], speculative="magic").stop()


def test_timed_policy_pauses_when_verifying_is_slower(realm):
    """Where a verify pass yields tokens more slowly than plain steps (a compute-bound CPU
    forward pass), drafting pauses; the text stays plain decoding's."""
    import time as _t

    class SlowVerify:
        def __init__(self, s):
            self.s = s

        def __getattr__(self, k):
            return getattr(self.s, k)

        def verify(self, ids):
            _t.sleep(0.05 * len(ids))  # far slower per token than a step
            return self.s.verify(ids)
    ids = realm.tokenize(PROMPT)
    plain = _decode(realm, ids, 60)
    spec = Speculator(NgramDrafter(), k_max=4)
    s = realm.session
    s.truncate(0)
    s.set_sampler(SamplerSettings(temperature=0.0))
    s.eval(ids)
    out = [s.sample()]
    slow = SlowVerify(s)
    while len(out) < 60:
        out.extend(spec.step(slow, out[-1], 60 - len(out)))
    assert out == plain
    assert 1 <= spec.stats.steps <= 3 and spec.stats.plain_steps > 30, spec.stats.as_dict()
