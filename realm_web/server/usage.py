"""Usage metering: one row per finished request in the key store's `usage` table, and what it costs.

A row is written when a request ends (after its last byte), keyed by its
request id, so a retried write never counts twice; a request whose process
died before it ended is not recorded (it did not finish). Cost is computed
when read, from a price table (USD per 1M tokens, per model):

    {"SmolLM2-135M-Instruct": {"prompt": 0.05, "cached": 0.01, "completion": 0.20},
     "*": {"prompt": 0.10, "completion": 0.40}}

"*" prices models not listed; "cached" (prompt tokens reused from a KV cache)
defaults to the prompt price. No table, or no entry: cost 0.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from .db import Database

GROUPS = ("tenant", "key_id", "model")


@dataclass(frozen=True)
class Price:
    prompt: float = 0.0       # USD per 1M uncached prompt tokens
    cached: float | None = None
    completion: float = 0.0   # USD per 1M generated tokens

    def cost(self, prompt: int, cached: int, generated: int) -> float:
        cached_price = self.prompt if self.cached is None else self.cached
        return ((prompt - cached) * self.prompt + cached * cached_price + generated * self.completion) / 1e6


class Prices:
    def __init__(self, table: dict | None = None) -> None:
        self.table: dict[str, Price] = {}
        for model, p in (table or {}).items():
            if not isinstance(p, dict) or set(p) - {"prompt", "cached", "completion"}:
                raise ValueError(f"price table: the entry for '{model}' must be an object with "
                                 "'prompt', 'cached' and/or 'completion' (USD per 1M tokens)")
            vals = {}
            for k, v in p.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"price table: '{model}'.{k} must be a number >= 0, not {v!r}")
                vals[k] = float(v)
            self.table[model] = Price(**vals)

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> "Prices":
        """The table in a JSON file (None: $REALM_PRICES, else no prices)."""
        path = path or os.environ.get("REALM_PRICES")
        if not path:
            return cls()
        try:
            with open(path, encoding="utf-8") as f:
                return cls(json.load(f))
        except json.JSONDecodeError as e:
            raise ValueError(f"price table {path} is not valid JSON: {e}") from None

    def price(self, model: str) -> Price:
        return self.table.get(model) or self.table.get("*") or Price()

    def cost(self, model: str, prompt: int, cached: int, generated: int) -> float:
        return self.price(model).cost(prompt, cached, generated)


def record(db: Database, request_id: str, tenant: str, key_id: str | None, model: str, endpoint: str,
           status: int, prompt: int, cached: int, generated: int, latency: float, t: float | None = None) -> None:
    db.x("INSERT INTO usage (request_id, t, tenant, key_id, model, endpoint, status, prompt_tokens, cached_tokens, "
         "generated_tokens, latency) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (request_id) DO NOTHING",
         (request_id, time.time() if t is None else t, tenant, key_id, model, endpoint, status,
          prompt, cached, generated, latency))


def parse_since(s: str | None, now: float | None = None) -> float | None:
    """'2026-12-01', '2026-12-01T10:00', an epoch number, or a duration back from now: '30m', '24h', '7d'."""
    if not s:
        return None
    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if s[-1:] in units and s[:-1].replace(".", "", 1).isdigit():
        return now - float(s[:-1]) * units[s[-1]]
    try:
        return float(s)
    except ValueError:
        pass
    from datetime import datetime, timezone
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"--since {s!r}: give a date (2026-12-01), a date and time (2026-12-01T10:00, UTC "
                         "unless it names a zone), an epoch time, or a duration (30m, 24h, 7d)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def summary(db: Database, prices: Prices, since: float | None = None, tenant: str | None = None) -> list[dict]:
    """Totals per tenant, key and model (successful or not: every request that reached a model)."""
    where, args = [], []
    if since is not None:
        where.append("t >= ?")
        args.append(since)
    if tenant:
        where.append("tenant = ?")
        args.append(tenant)
    sql = ("SELECT tenant, key_id, model, COUNT(*), SUM(prompt_tokens), SUM(cached_tokens), SUM(generated_tokens), "
           "SUM(latency), MAX(latency), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) FROM usage")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " GROUP BY tenant, key_id, model ORDER BY tenant, key_id, model"
    out = []
    for ten, kid, model, n, p, c, g, lat, lat_max, errors in db.q(sql, tuple(args)):
        p, c, g, n = int(p or 0), int(c or 0), int(g or 0), int(n)
        out.append({"tenant": ten, "key_id": kid, "model": model, "requests": n, "errors": int(errors or 0),
                    "prompt_tokens": p, "cached_tokens": c, "generated_tokens": g,
                    "latency_mean_s": round(float(lat or 0) / n, 4) if n else 0.0,
                    "latency_max_s": round(float(lat_max or 0), 4),
                    "cost_usd": round(prices.cost(model, p, c, g), 8)})
    return out
