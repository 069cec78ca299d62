"""The core's sampler against llama.cpp's own sampler chain.

llama.cpp's samplers (penalties -> top-k -> top-p -> min-p -> temperature) are
applied through llama-cpp-python's C API to the same logits and history; what
survives, softmaxed, is the distribution the core must draw from. The core is
sampled many times and its frequencies compared with that distribution: no
token outside llama.cpp's kept set may appear, and the total variation distance
must stay within what 10,000 draws allow (expected TVD for ~20 live tokens is
about 0.017; the bound 0.035 still fails any real mistake in a filter, e.g.
top-p keeping one token too few moves >= 0.05 of mass).
"""
from __future__ import annotations

import ctypes
import struct

import numpy as np
import pytest

from realm_web.wasm_host import WasmCore

N_DRAWS = 10_000  # draws are seeded: the test is deterministic


def llama_distribution(logits, hist, temp, top_k, top_p, min_p, rep, last_n, freq, pres) -> dict[int, float]:
    import llama_cpp as L
    n = len(logits)
    data = (L.llama_token_data * n)(*[L.llama_token_data(i, float(logits[i]), 0.0) for i in range(n)])
    cur = L.llama_token_data_array(data, n, -1, False)
    chain = [L.llama_sampler_init_penalties(n, last_n, rep, freq, pres), L.llama_sampler_init_top_k(top_k),
             L.llama_sampler_init_top_p(top_p, 1), L.llama_sampler_init_min_p(min_p, 1),
             L.llama_sampler_init_temp(temp)]
    for t in hist:
        L.llama_sampler_accept(chain[0], int(t))
    for s in chain:
        L.llama_sampler_apply(s, ctypes.byref(cur))
    ids = [cur.data[i].id for i in range(cur.size)]
    lg = np.array([cur.data[i].logit for i in range(cur.size)], np.float64)
    for s in chain:
        L.llama_sampler_free(s)
    p = np.exp(lg - lg.max())
    return dict(zip(ids, (p / p.sum()).tolist()))


def core_frequencies(core: WasmCore, logits, hist, temp, top_k, top_p, min_p, rep, last_n, freq, pres, seed):
    params = struct.pack("<6f2iQ", temp, top_p, min_p, rep, freq, pres, top_k, last_n, seed)
    pp = core.alloc(len(params))
    core.write(pp, params)
    s = core.call("realm_sampler_new", pp)
    lp = core.alloc(len(logits) * 4)
    hp = core.alloc(max(len(hist), 1) * 4)
    core.write_i32(hp, list(hist))
    counts: dict[int, int] = {}
    penalised = rep != 1.0 or freq != 0.0 or pres != 0.0
    draw = core.fn("realm_sampler_sample")
    core.write(lp, np.asarray(logits, np.float32))
    try:
        for _ in range(N_DRAWS):
            if penalised:  # penalties modify the logits in place
                core.write(lp, np.asarray(logits, np.float32))
            t = draw(core.store, s, lp, len(logits), hp, len(hist))
            counts[t] = counts.get(t, 0) + 1
    finally:
        core.call("realm_sampler_free", s)
        for p in (pp, lp, hp):
            core.free(p)
    return {k: v / N_DRAWS for k, v in counts.items()}


CASES = [
    # temp, top_k, top_p, min_p, repeat, last_n, freq, presence
    (1.0, 0, 1.0, 0.0, 1.0, 0, 0.0, 0.0),      # plain softmax
    (0.7, 40, 0.95, 0.05, 1.0, 64, 0.0, 0.0),  # llama.cpp's defaults
    (1.3, 10, 1.0, 0.0, 1.0, 0, 0.0, 0.0),     # top-k only, hot
    (1.0, 0, 0.6, 0.0, 1.0, 0, 0.0, 0.0),      # top-p only
    (1.0, 0, 1.0, 0.2, 1.0, 0, 0.0, 0.0),      # min-p only
    (0.8, 0, 1.0, 0.0, 1.5, 8, 0.0, 0.0),      # repetition penalty over the last 8
    (1.0, 0, 1.0, 0.0, 1.0, -1, 0.5, 0.3),     # frequency and presence penalties, whole history
]


@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("case", CASES)
def test_sampler_draws_from_llama_cpps_distribution(case):
    temp, top_k, top_p, min_p, rep, last_n, freq, pres = case
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal(64) * 2.0).astype(np.float32)
    logits[[3, 5, 9]] += 3.0  # make the penalised tokens matter
    hist = [3, 3, 5, 9, 9, 9, 12, 40, 41, 42, 43, 44, 45, 46]
    ref = llama_distribution(logits, hist, temp, top_k, top_p, min_p, rep,
                             last_n if last_n >= 0 else len(hist), freq, pres)
    got = core_frequencies(WasmCore(), logits, hist, temp, top_k, top_p, min_p, rep, last_n, freq, pres, seed=123)
    outside = set(got) - set(ref)
    assert not outside, f"drew tokens llama.cpp's chain removes: {sorted(outside)}"
    tvd = 0.5 * sum(abs(got.get(t, 0.0) - p) for t, p in ref.items())
    assert tvd < 0.035, f"total variation distance {tvd:.3f} from llama.cpp's distribution"


def test_greedy_is_argmax_and_seeds_repeat():
    core = WasmCore()
    logits = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    greedy = core_frequencies(core, logits, [], 0.0, 40, 0.95, 0.05, 1.0, 64, 0.0, 0.0, seed=1)
    assert greedy == {int(logits.argmax()): 1.0}
    a = core_frequencies(core, logits, [], 1.0, 0, 1.0, 0.0, 1.0, 0, 0.0, 0.0, seed=99)
    b = core_frequencies(core, logits, [], 1.0, 0, 1.0, 0.0, 1.0, 0, 0.0, 0.0, seed=99)
    assert a == b
