"""Logprobs on the GPU plan (issue 14): the GPU session's sampler is the core's
(realm_sampler_set_logprobs / realm_sampler_logprobs), fed the whole logits row while logprobs
are recorded, so a GPU generation gives the CPU's tokens and log-probabilities (lavapipe's
logits are the CPU's bit for bit: tests/test_gpu_model.py)."""
from __future__ import annotations

import math

import pytest

from gpu_helpers import gpu_device

pytestmark = pytest.mark.timeout(900)
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def realms(default_model_path):
    gpu_device()
    from realm_web import Realm
    cpu = Realm.load(default_model_path, n_ctx=128, device="cpu")
    gpu = Realm.load(default_model_path, n_ctx=128, device="gpu")
    yield cpu, gpu
    gpu.close()
    cpu.close()


@pytest.mark.parametrize("kw", [dict(temperature=0), dict(temperature=0.9, seed=3, top_k=0, top_p=0.95),
                                dict(temperature=0.7, seed=5, repeat_penalty=1.3)])
def test_gpu_logprobs_equal_cpu(realms, kw):
    cpu, gpu = realms
    got = []
    for r in realms:
        toks = list(r.generate_tokens(PROMPT, max_tokens=6, logprobs=3, **kw))
        got.append((toks, r.last_stats.logprobs))
    (ct, clp), (gt, glp) = got
    assert gt == ct and len(glp) == len(clp) == len(ct)
    for (cid, cv, ctop), (gid, gv, gtop), t in zip(clp, glp, ct):
        assert cid == gid == t
        assert abs(cv - gv) <= 1e-4 and cv <= 0
        assert [i for i, _ in gtop] == [i for i, _ in ctop] and len(gtop) == 3
        assert all(abs(a - b) <= 1e-4 for (_, a), (_, b) in zip(gtop, ctop))
        assert sum(math.exp(v) for _, v in gtop) <= 1 + 1e-5
        if kw["temperature"] == 0:
            assert gtop[0][0] == t   # greedy: the top one is the sampled token
    # off again: the GPU goes back to its argmax / top-k reads and records nothing
    gpu.generate(PROMPT, max_tokens=2, temperature=0)
    assert gpu.last_stats.logprobs == []
