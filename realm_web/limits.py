"""Sizes the Python host shares with the core, in one place.

Kept small and free of imports on purpose: it will be generated from the ABI
description, so every Python module reads these numbers from here."""
from __future__ import annotations

DEFAULT_CTX = 4096   # a session's context when none is asked for (capped by the model's trained context)
EVAL_BATCH = 64      # prompt tokens per forward batch inside realm_session_eval (core/model.c, n_batch)


def default_ctx(n_ctx_train: int) -> int:
    """The context a session gets when none is asked for: DEFAULT_CTX, at most what the model was trained on."""
    return min(DEFAULT_CTX, n_ctx_train or DEFAULT_CTX)
