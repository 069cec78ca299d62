"""The generation state machine (realm_web/generation.py) over tests/generation_cases.json,
which the JS SDK's Generation (js-sdk/src/generation.js) runs too (js-sdk/test/unit.test.mjs):
both hosts feed, stop, hold back, decode and count alike, rule for rule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from realm_web import generation, sampling

SPEC = json.loads((Path(__file__).resolve().parent / "generation_cases.json").read_text(encoding="utf-8"))
CASES = SPEC["cases"]


class ScriptedVocab:
    def __init__(self, spec):
        self.pieces = {int(k): bytes(v) for k, v in spec["pieces"].items()}
        self.eog = set(spec["eog"])

    def piece(self, tok):
        return self.pieces.get(tok, b"?")

    def is_eog(self, tok):
        return tok in self.eog


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_generation_case(case):
    opts = sampling.GenerationOptions(max_tokens=case["max_tokens"], stop=list(case.get("stop", [])),
                                      ignore_eos=case.get("ignore_eos", False))
    g = generation.Generation(ScriptedVocab(SPEC["vocab"]), case["prompt"], case["n_ctx"], opts,
                              text=case.get("text", True))
    got = {}
    if "cached" in case:
        got["keep"] = g.reuse(case["cached"])
    fed, accepted, samples = [], [], iter(case["samples"])
    while not g.done:
        ids = g.next_ids(case.get("chunk"))
        fed.append(ids)
        if g.fed(len(ids)):
            accepted.append(g.accept(next(samples)))
    s = g.stats
    got.update(next_ids=fed, accepted=accepted, finish_reason=s.finish_reason, tokens=s.tokens,
               generated_tokens=s.generated_tokens, cached_tokens=s.cached_tokens, n_past=g.n_past)
    assert got == case["expect"]
