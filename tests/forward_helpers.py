"""Helpers shared by tests/test_forward.py and tests/test_kquant_models.py: the prompts,
the quantized-weights tolerance, greedy decoding on a Session, rank-swap counting; and the
per-row KL divergence of two logits matrices, the yardstick of every comparison with
llama.cpp's noise (test_architectures, test_lora, test_gpu_lora, test_kv_cache)."""
from __future__ import annotations

import numpy as np

from realm_web.core_model import Session

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a land far away,",
    "The three primary colors are",
    "import numpy as np\n",
    "Water boils at a temperature of",
    "The quick brown fox",
    "In 1492, Columbus",
    "My favorite recipe for pancakes is",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
N_GEN = 32

# (max |Δlogit| allowed at the first step, logit gap below which a rank swap or a
#  greedy divergence counts as a near-tie) for quantized weights; see test_forward.py's docstring.
QUANTIZED = (2.0, 1.0)


def realm_greedy(session: Session, ids: list[int], n: int) -> tuple[np.ndarray, list[int]]:
    session.truncate(0)
    session.eval(ids)
    first = session.logits()[-1]
    tok, out = int(first.argmax()), []
    for _ in range(n):
        out.append(tok)
        tok = session.step(tok)  # the session's sampler is greedy by default
    return first, out


def rank_swaps(mine: np.ndarray, ref: np.ndarray, gap: float, k: int = 10,
               exact: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Pairs among llama.cpp's top k+1 that llama.cpp separates by more than `gap`
    but realm.wasm orders the other way; with `exact` (the logits of the file's exact
    dequantization), only pairs that the exact model orders as llama.cpp does: where
    llama.cpp's own quantization noise turned a pair round, realm may follow either."""
    top = np.argsort(-ref)[:k + 1]
    bad = []
    for i in range(len(top)):
        for j in range(i + 1, len(top)):
            a, b = top[i], top[j]
            if exact is not None and not exact[a] > exact[b]:
                continue
            if ref[a] - ref[b] > gap and not mine[a] > mine[b]:
                bad.append((int(a), int(b)))
    return bad


def kl_rows(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(p || q) per row, p and q given as logits (rows of the same vocabulary)."""
    lp = p_logits - p_logits.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    lq = q_logits - q_logits.max(1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(1, keepdims=True))
    return (np.exp(lp) * (lp - lq)).sum(1)
