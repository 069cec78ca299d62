"""The key store's schema, as numbered migrations (db.Database.migrate applies the missing ones, in order).

To change the schema, append a version; never edit one that has shipped. A
new column of `keys` also needs its KeyRecord field and its name in
keys._FIELDS (e.g. a per-key default adapter: `ALTER TABLE keys ADD COLUMN
adapter TEXT`, `adapter: str | None = None`).
Each is a list of statements in the SQL both SQLite and PostgreSQL accept
(TEXT, BIGINT, DOUBLE PRECISION, IF NOT EXISTS; no AUTOINCREMENT/SERIAL).
Version 1 is the schema from before versioning, so older SQLite files adopt it
unchanged.
"""
from __future__ import annotations

MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (1, (
        """CREATE TABLE IF NOT EXISTS keys (
            id        TEXT PRIMARY KEY,
            tenant    TEXT NOT NULL,
            hash      TEXT NOT NULL UNIQUE,
            name      TEXT,
            created   DOUBLE PRECISION NOT NULL,
            last_used DOUBLE PRECISION,
            disabled  INTEGER NOT NULL DEFAULT 0,
            revoked   INTEGER NOT NULL DEFAULT 0,
            rpm       BIGINT,
            tpm       BIGINT
        )""",
        "CREATE INDEX IF NOT EXISTS keys_tenant ON keys (tenant)",
        """CREATE TABLE IF NOT EXISTS tenants (
            name TEXT PRIMARY KEY,
            rpm  BIGINT,
            tpm  BIGINT
        )""",
    )),
    (2, (
        # admin keys (role 'admin') open the admin endpoints, and only those
        "ALTER TABLE keys ADD COLUMN role TEXT NOT NULL DEFAULT 'tenant'",
        # one row per finished request; request_id makes a retried write a no-op
        """CREATE TABLE IF NOT EXISTS usage (
            request_id       TEXT PRIMARY KEY,
            t                DOUBLE PRECISION NOT NULL,
            tenant           TEXT NOT NULL,
            key_id           TEXT,
            model            TEXT NOT NULL,
            endpoint         TEXT NOT NULL,
            status           INTEGER NOT NULL,
            prompt_tokens    BIGINT NOT NULL DEFAULT 0,
            cached_tokens    BIGINT NOT NULL DEFAULT 0,
            generated_tokens BIGINT NOT NULL DEFAULT 0,
            latency          DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS usage_tenant_t ON usage (tenant, t)",
    )),
    (3, (
        # a tenant's default LoRA adapters: JSON [{"id", "scale"}] for requests that name none
        """CREATE TABLE IF NOT EXISTS tenant_lora (
            tenant   TEXT PRIMARY KEY,
            adapters TEXT NOT NULL
        )""",
    )),
]
