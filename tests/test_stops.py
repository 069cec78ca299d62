"""Stop strings (realm_web/stops.py) over the cases in tests/stop_cases.json, which the JS
SDK's StopFilter (js-sdk/src/stops.js) runs too (js-sdk/test/unit.test.mjs): both hosts
hold back, match and flush alike."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from realm_web.stops import StopFilter

CASES = json.loads((Path(__file__).resolve().parent / "stop_cases.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_stop_filter_case(case):
    f = StopFilter(case["stops"])
    assert [f.push(p) for p in case["pieces"]] == case["out"]
    assert f.hit is case["hit"]
    assert f.flush() == case["flush"]


def test_cases_keep_all_the_text_when_nothing_matches():
    # what comes out (pushes, then flush) is the input, cut at the earliest stop when one matched
    for c in CASES:
        text = "".join(c["pieces"])
        got = "".join(c["out"]) + c["flush"]
        stops = [s for s in c["stops"] if s]
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        assert got == (text[:cut] if cut >= 0 else text), c["name"]
