"""Who is asking (API keys -> tenant, scope, limits) and whether their limits admit the request."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import rate_limited, unauthorized
from .keys import KeyStore
from .ratelimit import Limits, RateLimited

ANONYMOUS = "anonymous"


@dataclass
class Auth:
    tenant: str
    scope: str
    limits: Limits
    key_id: str | None = None
    lora: list[tuple[str, float]] | None = None   # the tenant's default LoRA adapters (key store)


def authenticate(keys: KeyStore | None, headers, query=None) -> Auth:
    """The caller of a request (headers, and the query for WebSockets); keys None: --no-auth."""
    if keys is None:
        return Auth(ANONYMOUS, "tenant:" + ANONYMOUS, Limits())
    key = None
    h = headers.get("authorization")
    if h:
        scheme, _, val = h.partition(" ")
        key = val.strip() if scheme.lower() == "bearer" else None
        if key is None:
            raise unauthorized("The Authorization header must be 'Bearer <API key>'.")
    key = key or headers.get("x-api-key") or headers.get("api-key") or (query or {}).get("api_key")
    if not key:
        raise unauthorized("You didn't provide an API key. Pass it as 'Authorization: Bearer <key>' "
                           "(create one with `realm api-key generate --tenant NAME`).")
    rec = keys.authenticate(key)
    if rec is None:
        shown = key[:13] + "..." + key[-4:] if len(key) > 20 else "***"
        raise unauthorized(f"Incorrect API key provided: {shown}. The key is unknown, disabled or revoked.")
    if rec.rpm is not None or rec.tpm is not None:
        lim = Limits(rec.rpm, rec.tpm)
        tlim = Limits(*keys.tenant_limits(rec.tenant))
        return Auth(rec.tenant, "key:" + rec.id, lim.merged(tlim), rec.id, keys.tenant_lora(rec.tenant))
    return Auth(rec.tenant, "tenant:" + rec.tenant, Limits(*keys.tenant_limits(rec.tenant)), rec.id,
                keys.tenant_lora(rec.tenant))


def reserve(limiter, metrics, auth: Auth, max_tokens: int):
    """Take one request and max_tokens from the caller's buckets, or raise the 429."""
    try:
        return limiter.acquire(auth.scope, auth.limits, max_tokens)
    except RateLimited as e:
        metrics.rate_limited.labels(auth.tenant, e.kind).inc()
        what = "requests per minute" if e.kind == "requests" else "generated tokens per minute"
        raise rate_limited(f"Rate limit reached for tenant '{auth.tenant}': {e.limit} {what}. "
                           f"Try again in {e.retry_after:.1f} s.", e.retry_after, e.kind) from None
