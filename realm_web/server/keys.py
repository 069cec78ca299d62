"""API keys and tenants, in a SQLite file (default) or PostgreSQL (`--db postgresql://...`).

A key belongs to one tenant. Only a key's SHA-256 is stored (keys carry 192
random bits, so a fast hash is enough; nothing reversible is kept): the plain
key is shown once, by `realm api-key generate`. A key is `sk-realm-<id>-<secret>`;
its 8-hex-digit id names it in `list`, `disable`, `enable` and `revoke`.

Rate limits (requests/min, generated tokens/min) can be set per key or per
tenant; unset values fall back to the tenant's, then to the server's defaults.

The server reads the store on every request (a primary-key lookup), so
`disable`/`revoke` take effect at once, without a restart, on every replica
that shares the store. Admin keys (role 'admin', `generate --admin`) open the
admin endpoints (GET /v1/usage, /metrics with --metrics-auth) and only those.
The schema lives in migrations.py; the engines in db.py.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .db import Conflict, Database, StoreUnavailable, open_database

PREFIX = "sk-realm-"
ADMIN_TENANT = "(admin)"   # the tenant column of admin keys (they belong to no tenant)


def default_keys_path() -> Path:
    """$REALM_KEYS, else <user data dir>/realm-web/keys.sqlite
    (user data dir: $XDG_DATA_HOME, else ~/.local/share; %APPDATA% on Windows)."""
    env = os.environ.get("REALM_KEYS")
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "realm-web" / "keys.sqlite"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    tenant: str
    name: str | None
    created: float
    last_used: float | None
    disabled: bool
    revoked: bool
    rpm: int | None
    tpm: int | None
    role: str = "tenant"

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def status(self) -> str:
        return "revoked" if self.revoked else "disabled" if self.disabled else "active"

    def as_dict(self) -> dict:
        return {"id": self.id, "tenant": self.tenant, "name": self.name, "status": self.status,
                "created": self.created, "last_used": self.last_used, "rpm": self.rpm, "tpm": self.tpm,
                "role": self.role}


# KeyRecord's fields are the keys table's columns: a new column is a migration (migrations.py), a field above
# (with a default) and its name here
_FIELDS = ("id", "tenant", "name", "created", "last_used", "disabled", "revoked", "rpm", "tpm", "role")
_COLS = ", ".join(_FIELDS)


def _rec(row) -> KeyRecord:
    d = dict(zip(_FIELDS, row))
    d["disabled"], d["revoked"] = bool(d["disabled"]), bool(d["revoked"])
    return KeyRecord(**d)


class KeyStore:
    """The key store. Thread-safe; several processes (replicas) may share one file or database.

    spec: a SQLite path, a postgresql:// URL, or None ($REALM_DB, else $REALM_KEYS / the default file)."""

    def __init__(self, spec: str | os.PathLike | None = None) -> None:
        spec = spec or os.environ.get("REALM_DB") or default_keys_path()
        self.db: Database = open_database(spec)
        self.path = self.db.path if hasattr(self.db, "path") else None
        self.name = self.db.name
        self.db.migrate()
        self._touched: dict[str, float] = {}

    def close(self) -> None:
        self.db.close()

    def _q(self, sql: str, args: tuple = ()) -> list:
        return self.db.q(sql, args)

    def _x(self, sql: str, args: tuple = ()) -> int:
        return self.db.x(sql, args)

    # ------------------------------------------------------------------ keys
    def generate(self, tenant: str | None, name: str | None = None, rpm: int | None = None,
                 tpm: int | None = None, admin: bool = False) -> tuple[KeyRecord, str]:
        """A new key for `tenant` (or an admin key): (its record, the plain key, never stored)."""
        tenant = ADMIN_TENANT if admin else (tenant or "").strip()
        if not tenant:
            raise ValueError("the tenant name is empty")
        if not admin and tenant == ADMIN_TENANT:
            raise ValueError(f"'{ADMIN_TENANT}' is reserved for admin keys")
        for _ in range(8):
            kid = secrets.token_hex(4)
            key = f"{PREFIX}{kid}-{secrets.token_hex(24)}"
            try:
                self._x("INSERT INTO keys (id, tenant, hash, name, created, rpm, tpm, role) VALUES (?,?,?,?,?,?,?,?)",
                        (kid, tenant, hash_key(key), name, time.time(), rpm, tpm, "admin" if admin else "tenant"))
            except Conflict:
                continue  # id collision: draw again
            return self.get(kid), key
        raise RuntimeError("could not draw a unique key id")

    def get(self, kid: str) -> KeyRecord | None:
        rows = self._q(f"SELECT {_COLS} FROM keys WHERE id = ?", (kid,))
        return _rec(rows[0]) if rows else None

    def list(self, tenant: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        sql = f"SELECT {_COLS} FROM keys"
        where, args = [], []
        if tenant:
            where.append("tenant = ?")
            args.append(tenant)
        if not include_revoked:
            where.append("revoked = 0")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_rec(r) for r in self._q(sql + " ORDER BY tenant, created", tuple(args))]

    def tenants(self) -> list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT tenant FROM keys WHERE role = 'tenant' ORDER BY tenant")]

    def _select(self, kid: str | None, tenant: str | None) -> tuple[str, tuple]:
        if bool(kid) == bool(tenant):
            raise ValueError("give a key id or a tenant (not both)")
        if kid:
            kid = kid[len(PREFIX):].split("-")[0] if kid.startswith(PREFIX) else kid
            return "id = ?", (kid,)
        return "tenant = ?", (tenant,)

    def set_disabled(self, disabled: bool, kid: str | None = None, tenant: str | None = None) -> int:
        """Disable or re-enable keys (not revoked ones); returns how many changed state or matched."""
        where, args = self._select(kid, tenant)
        return self._x(f"UPDATE keys SET disabled = ? WHERE {where} AND revoked = 0", (int(disabled),) + args)

    def revoke(self, kid: str | None = None, tenant: str | None = None) -> int:
        """Revoke for good: the key can never be enabled again."""
        where, args = self._select(kid, tenant)
        return self._x(f"UPDATE keys SET revoked = 1, disabled = 1 WHERE {where} AND revoked = 0", args)

    def set_limits(self, rpm: int | None, tpm: int | None, kid: str | None = None,
                   tenant: str | None = None) -> int:
        """Per-key limits (kid) or the tenant's (tenant). None clears a limit; 0 means unlimited."""
        if kid:
            where, args = self._select(kid, None)
            return self._x(f"UPDATE keys SET rpm = ?, tpm = ? WHERE {where}", (rpm, tpm) + args)
        if not tenant:
            raise ValueError("give a key id or a tenant")
        return self._x("INSERT INTO tenants (name, rpm, tpm) VALUES (?,?,?) "
                       "ON CONFLICT(name) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm", (tenant, rpm, tpm))

    def tenant_limits(self, tenant: str) -> tuple[int | None, int | None]:
        rows = self._q("SELECT rpm, tpm FROM tenants WHERE name = ?", (tenant,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def set_tenant_lora(self, tenant: str, adapters: list[tuple[str, float]] | None) -> None:
        """A tenant's default LoRA adapters [(id, scale)] for requests that name none; None clears."""
        if adapters is None:
            self._x("DELETE FROM tenant_lora WHERE tenant = ?", (tenant,))
            return
        blob = json.dumps([{"id": str(a), "scale": float(sc)} for a, sc in adapters])
        self._x("INSERT INTO tenant_lora (tenant, adapters) VALUES (?,?) "
                "ON CONFLICT(tenant) DO UPDATE SET adapters = excluded.adapters", (tenant, blob))

    def tenant_lora(self, tenant: str) -> list[tuple[str, float]] | None:
        rows = self._q("SELECT adapters FROM tenant_lora WHERE tenant = ?", (tenant,))
        return [(x["id"], float(x["scale"])) for x in json.loads(rows[0][0])] if rows else None

    # ------------------------------------------------------------ the server
    def authenticate(self, key: str) -> KeyRecord | None:
        """The record of an active key, or None (unknown, disabled or revoked).
        StoreUnavailable when the store cannot be read."""
        if not key or not key.startswith(PREFIX) or len(key) > 200:
            return None
        rows = self._q(f"SELECT {_COLS} FROM keys WHERE hash = ?", (hash_key(key),))
        if not rows:
            return None
        rec = _rec(rows[0])
        if rec.disabled or rec.revoked:
            return None
        now = time.time()
        if now - self._touched.get(rec.id, 0.0) > 60:  # last_used, at most once a minute per key
            self._touched[rec.id] = now
            try:
                self._x("UPDATE keys SET last_used = ? WHERE id = ?", (now, rec.id))
            except StoreUnavailable:
                pass  # a busy store must not fail the request
        return rec
