"""Exact speculative decoding: drafts are cheap guesses that the target model
checks in one pass (core/speculative.c); the text is plain decoding's, token
for token, greedy or seeded, only faster where the guesses are good.

Two drafters, as llama.cpp has them:
  NgramDrafter   prompt lookup: continue the latest earlier occurrence of the
                 context's last n tokens (no second model; editing, quoting,
                 code: text that repeats its input)
  ModelDrafter   a smaller GGUF with the same vocabulary drafts k greedy tokens
                 in its own session, kept in step with the target's cache

`Speculator` drives one session: it asks the drafter for a few tokens, has the
core verify them, and turns itself off for a while when too few are accepted
(a verify pass costs more than a step), so free text is not slowed down.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import RealmError

MODES = ("ngram", "draft")


@dataclass
class SpeculativeStats:
    steps: int = 0        # verify passes
    drafted: int = 0      # draft tokens proposed to the target
    accepted: int = 0     # of those, tokens the target sampled too
    plain_steps: int = 0  # steps taken without drafts (nothing to propose, or paused)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def as_dict(self) -> dict:
        return {"steps": self.steps, "drafted": self.drafted, "accepted": self.accepted,
                "plain_steps": self.plain_steps, "acceptance_rate": round(self.acceptance, 4)}


class NgramDrafter:
    """Prompt-lookup drafts from the session's own history (realm_session_draft_ngram)."""

    name = "ngram"

    def __init__(self, ngram_min: int = 2, ngram_max: int = 4) -> None:
        self.ngram_min, self.ngram_max = int(ngram_min), int(ngram_max)

    def draft(self, session, last: int, k: int) -> list[int]:
        return session.draft_ngram(last, self.ngram_min, self.ngram_max, k)

    def close(self) -> None:
        pass


class ModelDrafter:
    """k greedy tokens from a second, smaller model with the target's vocabulary."""

    name = "draft"

    def __init__(self, target_model, draft_source, n_ctx: int, threads: int | None = None) -> None:
        from . import store
        from .core_model import SamplerSettings, Session
        self.model = store.acquire(draft_source, threads=threads)
        try:
            check_same_vocab(target_model, self.model)
            self.session = Session(self.model, n_ctx)
            self.session.set_sampler(SamplerSettings(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0))
        except BaseException:
            store.release(self.model)
            raise

    def draft(self, session, last: int, k: int) -> list[int]:
        """Bring the draft session to the target's history + last, then k greedy steps."""
        want = session.tokens() + [int(last)]
        d = self.session
        have = d.tokens()
        n = 0
        for a, b in zip(have, want):
            if a != b:
                break
            n += 1
        n = min(n, len(want) - 1)  # evaluate at least `last` for fresh logits
        d.truncate(n)
        room = d.n_ctx - len(want)
        k = min(k, room)
        if k <= 0:
            return []
        d.eval(want[n:])
        out = [d.sample()]
        while len(out) < k:
            out.append(d.step(out[-1]))
        return out

    def close(self) -> None:
        from . import store
        if self.session is not None:
            self.session.close()
            self.session = None
            store.release(self.model)


def check_same_vocab(target, draft) -> None:
    """Refuse a draft model whose tokens are not the target's (ids would mean other text)."""
    a, b = target.info, draft.info
    if a.n_vocab != b.n_vocab:
        raise RealmError(f"the draft model's vocabulary has {b.n_vocab} tokens, the target's {a.n_vocab}: "
                         "speculative decoding needs the same tokenizer")
    ta = target.metadata().get("tokenizer.ggml.tokens") or []
    tb = draft.metadata().get("tokenizer.ggml.tokens") or []
    if ta != tb:
        i = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
        raise RealmError(f"the draft model's vocabulary differs from the target's at token {i}: "
                         "speculative decoding needs the same tokenizer")


class Speculator:
    """Speculative steps for one session, adaptive in two ways: drafts k tokens (growing
    while all are accepted, shrinking to what was accepted), and drafts only while it
    pays. A verify pass evaluates k+1 tokens, which costs about k+1 plain steps where
    the forward pass is compute-bound (a small model on a CPU) and far less where it is
    memory-bound (weights read once for all k+1); so it times both kinds of step and
    pauses drafting, for a doubling number of plain steps, while a verify pass yields
    tokens more slowly than plain steps, or accepts too little."""

    def __init__(self, drafter, k_max: int = 8, min_acceptance: float = 0.35, timed: bool = True) -> None:
        """timed=False: pause on poor acceptance only, never on timing (tests that count drafts)."""
        self.drafter = drafter
        self.timed = timed
        self.k_max = max(1, int(k_max))
        self.k = min(4, self.k_max)
        self.min_acceptance = min_acceptance
        self.stats = SpeculativeStats()
        self._rate = 1.0          # moving acceptance rate of recent verify passes
        self._t_plain = None      # moving seconds per token of plain steps
        self._t_spec = None       # moving seconds per token of verify passes (drafting included)
        self._pause = 0           # plain steps left before drafting again
        self._backoff = 8

    def reset_stats(self) -> None:
        self.stats = SpeculativeStats()

    def step(self, session, last: int, budget: int) -> list[int]:
        """The next tokens after `last` (which is sampled but not evaluated): between 1 and
        `budget`, exactly those plain decoding (session.step) would give."""
        room = session.n_ctx - session.n_past - 1  # positions left after `last`
        k = min(self.k, budget - 1, room)
        t0 = time.perf_counter()
        drafts = []
        if self._pause > 0:
            self._pause -= 1
        elif k > 0 and (self._t_plain is not None or not self.timed):  # a plain step first: the yardstick
            drafts = self.drafter.draft(session, last, k)[:k]
        if not drafts:
            out = [session.step(last)]
            self.stats.plain_steps += 1
            self._t_plain = _ema(self._t_plain, time.perf_counter() - t0)
            return out
        out = session.verify([last] + drafts)
        self._t_spec = _ema(self._t_spec, (time.perf_counter() - t0) / len(out))
        acc = len(out) - 1
        st = self.stats
        st.steps += 1
        st.drafted += len(drafts)
        st.accepted += acc
        self._adapt(acc, len(drafts))
        return out

    def _adapt(self, accepted: int, drafted: int) -> None:
        self._rate = 0.7 * self._rate + 0.3 * (accepted / drafted)
        if accepted == drafted:
            self.k = min(self.k_max, self.k * 2)
        else:
            self.k = max(1, min(self.k, accepted + 1))
        slower = (self.timed and self._t_spec is not None and self._t_plain is not None
                  and self._t_spec > 0.97 * self._t_plain)
        if self._rate < self.min_acceptance or slower:  # verifying costs more than it brings: rest
            self._pause = self._backoff
            self._backoff = min(512, self._backoff * 2)
            self._rate = max(self._rate, self.min_acceptance)  # one fresh try after the pause
            self._t_spec = None
        else:
            self._backoff = 8

    def close(self) -> None:
        self.drafter.close()


def _ema(old: float | None, new: float) -> float:
    return new if old is None else 0.8 * old + 0.2 * new


def make_speculator(mode: str | None, target_model, n_ctx: int, draft_model=None, draft_tokens: int = 8,
                    threads: int | None = None) -> Speculator | None:
    """A Speculator for `mode` ("ngram", "draft", or None/"off" for none)."""
    if mode in (None, "", "off", "none"):
        if draft_model is not None:
            mode = "draft"
        else:
            return None
    if mode not in MODES:
        raise RealmError(f"unknown speculative mode {mode!r} (use 'ngram' or 'draft')")
    if mode == "draft":
        if draft_model is None:
            raise RealmError("speculative='draft' needs draft_model=PATH (a smaller GGUF with the same vocabulary)")
        return Speculator(ModelDrafter(target_model, draft_model, n_ctx, threads=threads), k_max=draft_tokens)
    return Speculator(NgramDrafter(), k_max=draft_tokens)
