"""One generation as a state machine, advanced from outside one step at a time.

`Realm` (one session, a loop) and the server's scheduler (many jobs, one unit
of work each per turn) both drive it, so prefix reuse, end-of-generation,
max_tokens, a full context, stop strings, finish reasons, incremental UTF-8 and
the stats are written once. It never calls the model: the driver asks what to
feed next, evaluates it however it likes (one session at a time today; one
core call for many sessions when decoding is batched), and hands back what the
model sampled:

    gen = Generation(vocab, ids, n_ctx, options)
    session.truncate(gen.reuse(session.tokens()))   # keep the longest common prefix
    while not gen.done:
        ids = gen.next_ids(chunk)       # a prompt chunk, or the one token to decode
        evaluate ids
        if gen.fed(len(ids)):           # logits for a new token are ready
            text = gen.accept(sample())  # the text it adds; gen.done, gen.finish_reason

`advance(gen, session)` is that loop's body over the current Session API.
"""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Sequence

from .sampling import GenerationOptions
from .stops import StopFilter

PREFILL, DECODE, DONE = "prefill", "decode", "done"


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0       # prompt tokens reused from the session's cache
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0
    finish_reason: str = ""      # "stop" (EOG or a stop string) or "length"; "" while running or if abandoned
    tokens: list[int] = field(default_factory=list)
    speculative: object = None   # a speculative.SpeculativeStats when drafts were used (drafted, accepted, ...)
    logprobs: list = field(default_factory=list)   # per token when asked: (id, logprob, [(id, logprob), ...])

    @property
    def prompt_tps(self) -> float:
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generate_tps(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0


class Vocab:
    """A model's token bytes and end-of-generation flags, each asked of the core once."""

    def __init__(self, model) -> None:
        self.model = model
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    def piece(self, tok: int) -> bytes:
        p = self._pieces.get(tok)
        if p is None:
            p = self._pieces[tok] = self.model.piece(tok, special=False)
        return p

    def is_eog(self, tok: int) -> bool:
        v = self._eog.get(tok)
        if v is None:
            v = self._eog[tok] = self.model.is_eog(tok)
        return v


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Generation:
    """The state of one generation: PREFILL (prompt chunks) -> DECODE (one token per step) -> DONE."""

    def __init__(self, vocab: Vocab, ids: Sequence[int], n_ctx: int, options: GenerationOptions | None = None,
                 text: bool = True) -> None:
        """ids: the prompt (not empty, shorter than n_ctx: the caller refuses others with its own
        message). text: decode tokens to text (False: only ids are wanted, no stop strings)."""
        o = options or GenerationOptions()
        self.vocab = vocab
        self.ids = list(ids)
        self.n_ctx = int(n_ctx)
        self.max_tokens = self.n_ctx if o.max_tokens is None or o.max_tokens < 0 else int(o.max_tokens)
        self.ignore_eos = o.ignore_eos
        self.text = text
        self.stats = GenerationStats(prompt_tokens=len(self.ids))
        self.phase = PREFILL
        self.pos = 0                  # prompt tokens in the session's cache
        self.n_past = 0               # tokens in the session's cache
        self.pending: int | None = None   # the last accepted token: the next step evaluates it
        self.token: int | None = None     # the token the last accept() took, None if it took none
        self.t_prefill0: float | None = None
        self.t_decode0: float | None = None
        self.t_first: float | None = None
        self._filter = StopFilter(o.stop if text else [])
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def done(self) -> bool:
        return self.phase == DONE

    @property
    def finish_reason(self) -> str:
        return self.stats.finish_reason

    # ------------------------------------------------------ what to feed next
    def reuse(self, cached: Sequence[int]) -> int:
        """The session holds `cached`: keep its longest common prefix with the prompt (at least
        one prompt token is evaluated again, for fresh logits). Returns the positions to keep;
        the caller truncates the session there."""
        n = min(common_prefix(cached, self.ids), len(self.ids) - 1)
        self.pos = self.n_past = self.stats.cached_tokens = n
        return n

    def next_ids(self, max_chunk: int | None = None) -> list[int]:
        """The ids to evaluate next: up to max_chunk prompt tokens (None: the rest), or the one
        token to decode; [] when done."""
        if self.phase == PREFILL:
            if self.t_prefill0 is None:
                self.t_prefill0 = time.perf_counter()
            end = len(self.ids) if max_chunk is None else min(len(self.ids), self.pos + max_chunk)
            return self.ids[self.pos:end]
        if self.phase == DECODE:
            return [self.pending]
        return []

    def fed(self, n: int) -> bool:
        """The model evaluated the first n ids next_ids() gave. True when a token is to be
        sampled now (the prompt is in, or a decode step ran)."""
        if self.phase == PREFILL:
            self.pos += n
            self.n_past = self.pos
            if self.pos < len(self.ids):
                return False
            now = time.perf_counter()
            self.stats.prompt_seconds = now - self.t_prefill0
            self.t_decode0 = now
            self.phase = DECODE
            return True
        if self.phase == DECODE:
            self.n_past += n
            return True
        return False

    # ---------------------------------------------------- what a token means
    def accept(self, tok: int) -> str:
        """The model sampled `tok`: the text this adds (whole UTF-8 characters, held back while it
        could still become a stop string). Afterwards `done` and `finish_reason` say whether it ended."""
        self.token = None
        if not self.ignore_eos and self.vocab.is_eog(tok):
            return self._finish("stop")
        if self.stats.generated_tokens >= self.max_tokens:   # max_tokens 0
            return self._finish("length")
        self.token = tok
        self.stats.generated_tokens += 1
        self.stats.tokens.append(tok)
        if self.t_first is None:
            self.t_first = time.perf_counter()
        out = ""
        if self.text:
            out = self._filter.push(self._decoder.decode(self.vocab.piece(tok)))
            if self._filter.hit:
                return out + self._finish("stop", flush=False)
        # at max_tokens, or no room left to evaluate tok: end here, without evaluating it
        if self.stats.generated_tokens >= self.max_tokens or self.n_past >= self.n_ctx:
            return out + self._finish("length")
        self.pending = tok
        return out

    def _finish(self, reason: str, flush: bool = True) -> str:
        tail = ""
        if flush and self.text:
            tail = self._filter.push(self._decoder.decode(b"", final=True))
            if not self._filter.hit:
                tail += self._filter.flush()
        self.stats.finish_reason = reason
        self.close()
        return tail

    def close(self) -> None:
        """Stop here (done, or abandoned: finish_reason stays ""); settles the timing. Idempotent."""
        if self.phase != DONE:
            self.phase = DONE
            if self.t_decode0 is not None:
                self.stats.generate_seconds = time.perf_counter() - self.t_decode0


def advance(gen: Generation, session, max_chunk: int | None = None, speculator=None) -> str:
    """One unit of work on one session (a core_model.Session or a GPU session): a prompt
    chunk, or one decode step (`Session.step`: evaluate and sample in one call; with a
    speculator, one verify pass that may yield several tokens, exactly the ones plain
    steps would). Returns the text it adds."""
    ids = gen.next_ids(max_chunk)
    if gen.phase == DECODE:
        if speculator is None:
            toks = [session.step(ids[0])]
        else:
            toks = speculator.step(session, ids[0], max(1, gen.max_tokens - gen.stats.generated_tokens))
        out = ""
        for tok in toks:  # each: its predecessor was evaluated, then it was sampled
            gen.fed(1)
            out += gen.accept(tok)
            if gen.done:
                break
        return out
    session.eval(ids)
    return gen.accept(session.sample()) if gen.fed(len(ids)) else ""
