"""Realm.generate_batch / stream_batch: several prompts advanced by one batched forward pass
per step give exactly what each gives alone (greedy and seeded, stops, max_tokens, a prompt
longer than one step's budget), and bad prompts are refused by index."""
from __future__ import annotations

import pytest

from realm_web import Realm
from realm_web.errors import ContextOverflowError, RealmError

LONG = ("Here is a long passage to read before answering. " * 12) + "In one word, the passage is"
PROMPTS = [
    "The capital of France is",
    {"prompt": "Once upon a time", "temperature": 0.8, "seed": 5, "max_tokens": 20},
    {"prompt": "List three colours:", "stop": ["\n"], "max_tokens": 24},
    {"prompt": LONG, "max_tokens": 8},
    {"prompt": "def add(a, b):", "temperature": 0.7, "top_p": 0.9, "seed": 9, "max_tokens": 6},
]


@pytest.fixture(scope="module")
def realm(default_model_path):
    r = Realm.load(default_model_path, n_ctx=512)
    yield r
    r.close()


def _alone(r, p, **shared):
    kw = dict(shared, **p) if isinstance(p, dict) else dict(shared, prompt=p)
    prompt = kw.pop("prompt")
    return r.generate(prompt, **kw)


def test_generate_batch_equals_each_alone(realm):
    assert len(realm.tokenize(LONG)) > realm.model.batch_max_tokens()   # it takes several steps
    want = [_alone(realm, p, max_tokens=12, temperature=0) for p in PROMPTS]
    got = realm.generate_batch(PROMPTS, max_tokens=12, temperature=0)
    assert got == want
    assert len(realm.last_batch_stats) == len(PROMPTS) and 0 < realm.last_batch_stats[3].generated_tokens <= 8
    assert all(s.finish_reason in ("stop", "length") for s in realm.last_batch_stats)


def test_stream_batch_interleaves_pieces(realm):
    seen: list[int] = []
    out = ["", ""]
    for i, piece in realm.stream_batch(["The capital of France is", "Water boils at"], max_tokens=8, temperature=0):
        seen.append(i)
        out[i] += piece
    assert set(seen) == {0, 1} and seen != sorted(seen)         # pieces of both, interleaved
    assert out == [realm.generate(p, max_tokens=8, temperature=0) for p in ["The capital of France is", "Water boils at"]]


def test_bad_batch_prompts_name_their_index(realm):
    with pytest.raises(RealmError, match="batch prompt 1 is empty"):
        realm.generate_batch(["Hi", []])
    with pytest.raises(ContextOverflowError, match="batch prompt 0 has 600 tokens"):
        realm.generate_batch([[1] * 600])
    with pytest.raises(TypeError, match="unknown sampling setting"):
        realm.generate_batch([{"prompt": "Hi", "temprature": 0}])
    assert realm.generate("The capital of France is", max_tokens=4, temperature=0)   # still works
