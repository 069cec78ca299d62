"""Who is asking (API keys -> tenant, scope, limits) and whether their limits admit the request."""
from __future__ import annotations

from dataclasses import dataclass

from .db import StoreUnavailable
from .errors import APIError, rate_limited, unauthorized, unavailable
from .keys import KeyStore
from .ratelimit import Limits, RateLimited
from .ratelimit_redis import LimiterUnavailable

ANONYMOUS = "anonymous"


@dataclass
class Auth:
    tenant: str
    scope: str
    limits: Limits
    key_id: str | None = None
    lora: list[tuple[str, float]] | None = None   # the tenant's default LoRA adapters (key store)
    admin: bool = False


def forbidden(message: str) -> APIError:
    return APIError(403, message, type="permission_error", code="forbidden")


def authenticate(keys: KeyStore | None, headers, query=None, admin: bool | None = False) -> Auth:
    """The caller of a request (headers, and the query for WebSockets); keys None: --no-auth.

    admin: the route is an admin endpoint (only admin keys, even under --no-auth);
    otherwise admin keys are refused (they belong to no tenant); None: either kind (the route
    checks auth.admin itself, e.g. POST /lora-adapters)."""
    if keys is None:
        if admin:
            raise forbidden("Admin endpoints need the key store: this server runs with --no-auth.")
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
    try:
        rec = keys.authenticate(key)
        if rec is not None and not rec.admin:
            tenant_limits = keys.tenant_limits(rec.tenant)
            tenant_lora = keys.tenant_lora(rec.tenant)
    except StoreUnavailable as e:
        raise unavailable(f"{e}; try again shortly.") from None
    if rec is None:
        shown = key[:13] + "..." + key[-4:] if len(key) > 20 else "***"
        raise unauthorized(f"Incorrect API key provided: {shown}. The key is unknown, disabled or revoked.")
    if admin is not None and rec.admin != admin:   # None: a route both kinds of key may use
        raise forbidden("This endpoint needs an admin key (`realm api-key generate --admin`)." if admin else
                        "Admin keys open only the admin endpoints; use a tenant's key for this request.")
    if rec.admin:
        return Auth(rec.tenant, "admin:" + rec.id, Limits(), rec.id, admin=True)
    if rec.rpm is not None or rec.tpm is not None:
        lim = Limits(rec.rpm, rec.tpm)
        return Auth(rec.tenant, "key:" + rec.id, lim.merged(Limits(*tenant_limits)), rec.id, tenant_lora)
    return Auth(rec.tenant, "tenant:" + rec.tenant, Limits(*tenant_limits), rec.id, tenant_lora)


def reserve(limiter, metrics, auth: Auth, max_tokens: int):
    """Take one request and max_tokens from the caller's buckets, or raise the 429."""
    try:
        return limiter.acquire(auth.scope, auth.limits, max_tokens)
    except LimiterUnavailable as e:
        raise unavailable(f"{e}; try again shortly.") from None
    except RateLimited as e:
        metrics.rate_limited.labels(auth.tenant, e.kind).inc()
        what = "requests per minute" if e.kind == "requests" else "generated tokens per minute"
        raise rate_limited(f"Rate limit reached for tenant '{auth.tenant}': {e.limit} {what}. "
                           f"Try again in {e.retry_after:.1f} s.", e.retry_after, e.kind) from None
