"""Log-probabilities as OpenAI writes them, from the scheduler's per-token entries.

An entry is (token bytes, logprob, [(bytes, logprob), ...]): the sampled token
and the most likely ones, recorded by the core's sampler (realm_session_logprobs:
the log-softmax of the logits it samples from, after penalties, at temperature 1).
Chat completions carry {"content": [{token, logprob, bytes, top_logprobs}]};
text completions the legacy {tokens, token_logprobs, top_logprobs, text_offset}.
"""
from __future__ import annotations


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


FLOOR = -9999.0   # OpenAI's logprob for a token that cannot come (JSON has no -Infinity)


def _candidates(top):
    """The top entries, a token the grammar refused (-inf) at OpenAI's floor."""
    return [(tb, tlp if tlp != float("-inf") else FLOOR) for tb, tlp in top]


def chat_content(entries) -> list[dict]:
    return [{"token": _text(b), "logprob": lp, "bytes": list(b),
             "top_logprobs": [{"token": _text(tb), "logprob": tlp, "bytes": list(tb)} for tb, tlp in _candidates(top)]}
            for b, lp, top in entries]


class CompletionLogprobs:
    """The legacy /v1/completions object of one choice; text_offset counts the characters of
    the tokens before each (the choice's text as generated)."""

    def __init__(self) -> None:
        self.offset = 0

    def part(self, entries) -> dict:
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for b, lp, top in entries:
            t = _text(b)
            out["tokens"].append(t)
            out["token_logprobs"].append(lp)
            out["top_logprobs"].append({_text(tb): tlp for tb, tlp in _candidates(top)})
            out["text_offset"].append(self.offset)
            self.offset += len(t)
        return out
