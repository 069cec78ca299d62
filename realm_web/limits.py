"""Sizes the Python host shares with the core, in one place: core/abi.json's
constants (the core and the JS SDK read the same ones)."""
from __future__ import annotations

from .abi import DEFAULT_CTX, EVAL_BATCH  # noqa: F401  (a session's default context; prompt tokens per forward batch)


def default_ctx(n_ctx_train: int) -> int:
    """The context a session gets when none is asked for: DEFAULT_CTX, at most what the model was trained on."""
    return min(DEFAULT_CTX, n_ctx_train or DEFAULT_CTX)
