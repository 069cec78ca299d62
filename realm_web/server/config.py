"""`realm serve`'s settings (one dataclass, no heavy imports: the CLI reads its defaults)."""
from __future__ import annotations

from dataclasses import dataclass, field

PREFILL_CHUNK = 64   # prompt tokens per stream and step unless configured (at most limits.EVAL_BATCH)


@dataclass
class ServerConfig:
    models: list[tuple[str, str]] = field(default_factory=list)  # (id, path); empty: the default model
    host: str = "127.0.0.1"
    port: int = 8080
    keys_path: str | None = None        # the key store: a SQLite path or a postgresql:// URL (None: $REALM_DB / default file)
    redis_url: str | None = None        # redis://...: rate limits shared by every replica (None: per process)
    prices_path: str | None = None      # JSON price table for usage cost (None: $REALM_PRICES, else no prices)
    metrics_auth: bool = False          # GET /metrics needs an admin key
    no_auth: bool = False
    n_ctx: int | None = None            # per session; None: limits.default_ctx (DEFAULT_CTX, at most the trained context)
    cache_type_k: str = "f16"           # KV cache types of every session (--cache-type-k/-v): "f16" or "q8_0"
    cache_type_v: str = "f16"
    max_sessions: int = 32              # KV caches per model (busy + idle)
    prefill_chunk: int = PREFILL_CHUNK  # prompt tokens per stream and step (<= limits.EVAL_BATCH)
    batch_tokens: int | None = None     # tokens per batched forward pass, all streams (None: the core's most)
    threads: int | None = None          # CPU threads per model (None: realm_web's default)
    speculative: str | None = None      # "ngram" or "draft" (realm_web/speculative.py): same text, fewer passes
    draft_model: str | None = None      # the draft GGUF for "draft" (same vocabulary as every served model)
    draft_tokens: int = 8               # at most this many drafts per verify pass
    idle_ttl: float = 600.0             # seconds before an idle session is freed
    rpm: int | None = None              # default requests/min per tenant (None: unlimited)
    tpm: int | None = None              # default generated tokens/min per tenant
    max_body: int = 1 << 20             # bytes
    grace: float = 30.0                 # SIGTERM: seconds to let in-flight requests finish
    log_format: str = "text"
    log_level: str = "info"
    lora: list[tuple[str, str]] = field(default_factory=list)   # (adapter id, path) loaded at start (--lora ID=PATH)
    admin_tenants: list[str] = field(default_factory=list)      # tenants that may POST /lora-adapters (--admin-tenant)
