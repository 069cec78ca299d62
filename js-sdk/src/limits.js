// Numbers the host shares with the core and with the Python host (realm_web/limits.py:
// DEFAULT_CTX, EVAL_BATCH). Kept here alone so they can be generated from one ABI
// description later: nothing else in js-sdk/src spells them.

/** Context size of a session when the caller does not say: min(DEFAULT_CTX, the model's training context). */
export const DEFAULT_CTX = 4096;

/** Prompt ids per realm_session_eval call: the core's matrix-matrix batch (abort checks fall between batches). */
export const EVAL_BATCH = 64;
