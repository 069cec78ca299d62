"""`realm serve`, `realm api-key ...` and `realm usage`.

Hooked into the `realm` command by realm_web/cli.py (`register(sub)`), and
runnable on its own:  python -m realm_web.server.cli serve --no-auth
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..limits import DEFAULT_CTX, EVAL_BATCH
from .config import PREFILL_CHUNK


def _model_spec(s: str) -> tuple[str, str]:
    """PATH[:ID] -> (id, path). A ':' belongs to the path when the whole string is a file."""
    from .models import default_model_id
    path, mid = s, None
    if not os.path.isfile(s) and ":" in s:
        head, _, tail = s.rpartition(":")
        if head and tail and "/" not in tail and head != "hf":
            path, mid = head, tail
    if path.startswith("hf:"):   # pulled in cmd_serve (first use), then served from the model directory
        return (mid or default_model_id(path.rsplit("/", 1)[-1]), path)
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such model file: {path}")
    return (mid or default_model_id(path), os.path.abspath(path))


def _lora_spec(s: str) -> tuple[str, str]:
    """ID=PATH -> (id, absolute path)."""
    aid, sep, path = s.partition("=")
    if not sep or not aid or not path:
        raise argparse.ArgumentTypeError(f"expected ID=PATH, got {s!r}")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such LoRA adapter file: {path}")
    return (aid, os.path.abspath(path))


def _limit(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = unlimited)")
    return v


def cmd_serve(args) -> int:
    try:
        from .config import ServerConfig
        from .serve import run
    except ImportError as e:
        print(f"realm serve: {e}; install the server's dependencies:  pip install 'realm-web[server]'",
              file=sys.stderr)
        return 1
    from ..hub import HubError, resolve
    try:
        models = [(mid, resolve(path)) for mid, path in args.model or []]
    except HubError as e:
        print(f"realm serve: {e}", file=sys.stderr)
        return 1
    cfg = ServerConfig(models=models, host=args.host, port=args.port, keys_path=args.keys,
                       no_auth=args.no_auth, n_ctx=args.ctx or None, max_sessions=args.max_sessions,
                       cache_type_k=args.cache_type_k, cache_type_v=args.cache_type_v,
                       idle_ttl=args.idle_ttl, prefill_chunk=args.prefill_chunk,
                       batch_tokens=args.batch_tokens or None, threads=args.threads or None,
                       speculative=args.speculative or ("draft" if args.draft_model else None),
                       draft_model=args.draft_model, draft_tokens=args.draft_tokens, rpm=args.rpm or None, tpm=args.tpm or None,
                       max_body=args.max_body, grace=args.grace, log_format=args.log_format,
                       log_level=args.log_level, lora=args.lora or [], admin_tenants=args.admin_tenant or [],
                       redis_url=args.redis, prices_path=args.prices, metrics_auth=args.metrics_auth)
    return run(cfg)


def _store(args):
    from .keys import KeyStore
    return KeyStore(args.keys)


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _fmt_limit(v: int | None) -> str:
    return "default" if v is None else "unlimited" if v == 0 else str(v)


def cmd_key_generate(args) -> int:
    if bool(args.tenant) == bool(args.admin):
        raise SystemExit("realm api-key generate: give --tenant NAME or --admin (one of them)")
    ks = _store(args)
    rec, key = ks.generate(args.tenant, name=args.name, rpm=args.rpm, tpm=args.tpm, admin=args.admin)
    print("role:    admin (opens only the admin endpoints)" if rec.admin else f"tenant:  {rec.tenant}")
    print(f"key id:  {rec.id}" + (f"  ({rec.name})" if rec.name else ""))
    print(f"limits:  {_fmt_limit(rec.rpm)} requests/min, {_fmt_limit(rec.tpm)} tokens/min")
    print(f"store:   {ks.name}")
    print("The key below is shown only once; only its hash is stored.")
    print(key)
    return 0


def cmd_key_list(args) -> int:
    ks = _store(args)
    recs = ks.list(tenant=args.tenant, include_revoked=args.all)
    if args.json:
        print(json.dumps([r.as_dict() for r in recs], indent=2))
        return 0
    if not recs:
        print(f"no keys in {ks.name}")
        return 0
    rows = [("ID", "TENANT", "ROLE", "STATUS", "RPM", "TPM", "CREATED", "LAST USED", "NAME")]
    for r in recs:
        rows.append((r.id, r.tenant, r.role, r.status, _fmt_limit(r.rpm), _fmt_limit(r.tpm), _fmt_time(r.created),
                     _fmt_time(r.last_used), r.name or ""))
    w = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip())
    return 0


def _which(args) -> dict:
    if bool(args.id) == bool(args.tenant):
        raise SystemExit("realm api-key: give a key id or --tenant NAME (one of them)")
    return {"kid": args.id, "tenant": args.tenant}


def cmd_key_state(args) -> int:
    ks = _store(args)
    sel = _which(args)
    if args.action == "revoke":
        n = ks.revoke(**sel)
    else:
        n = ks.set_disabled(args.action == "disable", **sel)
    what = f"key {args.id}" if args.id else f"tenant {args.tenant}"
    if n == 0:
        print(f"realm api-key: no {'matching' if args.action != 'revoke' else 'unrevoked'} key for {what}",
              file=sys.stderr)
        return 1
    print(f"{args.action}d {n} key(s) of {what}")
    return 0


def cmd_key_lora(args) -> int:
    from ..lora import parse_spec
    ks = _store(args)
    if args.clear:
        ks.set_tenant_lora(args.tenant, None)
        print(f"tenant {args.tenant}: no default LoRA adapter")
        return 0
    pairs = [parse_spec(x) for x in args.adapter]
    ks.set_tenant_lora(args.tenant, pairs)
    print(f"tenant {args.tenant}: default LoRA " + ", ".join(f"{a} (scale {sc:g})" for a, sc in pairs))
    return 0


def cmd_key_limits(args) -> int:
    ks = _store(args)
    sel = _which(args)
    n = ks.set_limits(args.rpm, args.tpm, **sel)
    if n == 0:
        print(f"realm api-key: no key {args.id}", file=sys.stderr)
        return 1
    who = f"key {args.id}" if args.id else f"tenant {args.tenant}"
    print(f"{who}: {_fmt_limit(args.rpm)} requests/min, {_fmt_limit(args.tpm)} tokens/min")
    return 0


def cmd_usage(args) -> int:
    from .usage import Prices, parse_since, summary
    ks = _store(args)
    rows = summary(ks.db, Prices.load(args.prices), parse_since(args.since), args.tenant)
    cols = ["tenant", "key_id", "model", "requests", "errors", "prompt_tokens", "cached_tokens", "generated_tokens",
            "latency_mean_s", "latency_max_s", "cost_usd"]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.csv:
        import csv
        w = csv.DictWriter(sys.stdout, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    elif not rows:
        print(f"no usage recorded in {ks.name}" + (f" for tenant {args.tenant}" if args.tenant else "")
              + (f" since {args.since}" if args.since else ""))
    else:
        table = [("TENANT", "KEY", "MODEL", "REQS", "ERR", "PROMPT", "CACHED", "GENERATED", "MEAN S", "MAX S", "COST USD")]
        table += [tuple(str(r[c] if r[c] is not None else "-") for c in cols) for r in rows]
        w = [max(len(row[i]) for row in table) for i in range(len(cols))]
        for row in table:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip())
    return 0


def register(sub) -> None:
    """Add `serve`, `api-key` and `usage` to the `realm` command's subparsers."""
    from .keys import default_keys_path
    keys_help = (f"the key store: a SQLite file or a postgresql:// URL (default: $REALM_DB, else $REALM_KEYS, "
                 f"else {default_keys_path()})")

    s = sub.add_parser("serve", help="OpenAI-compatible HTTP/WebSocket server",
                       description="Serve models over an OpenAI-compatible API (see docs/SERVER.md).")
    s.add_argument("--model", "-m", action="append", type=_model_spec, metavar="PATH[:ID]",
                   help="a GGUF to serve, with an optional model id (default id: the file name without "
                        ".gguf); hf:OWNER/NAME/FILE pulls it from the Hub on first use (`realm pull`); "
                        "repeat for several; default: the built-in SmolLM2-135M-Instruct")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--db", "--keys", dest="keys", default=None, help=keys_help)
    s.add_argument("--no-auth", action="store_true", help="accept requests without API keys (local use only)")
    s.add_argument("--redis", default=None, metavar="URL",
                   help="redis://host:port/db: rate limits shared by every replica using it (default: per process)")
    s.add_argument("--prices", default=None, metavar="FILE",
                   help="JSON price table (USD per 1M tokens per model) for usage cost (default: $REALM_PRICES)")
    s.add_argument("--metrics-auth", action="store_true", help="GET /metrics needs an admin key")
    s.add_argument("-c", "--ctx", type=int, default=0,
                   help=f"context per session in tokens (default min({DEFAULT_CTX}, the model's trained context))")
    from ..cli import add_cache_types
    add_cache_types(s)
    s.add_argument("--max-sessions", type=int, default=32,
                   help="KV caches per model, busy and idle (default 32); more requests queue")
    s.add_argument("--speculative", choices=["ngram", "draft"], default=None,
                   help="exact speculative decoding for every model: ngram (prompt lookup) or draft (--draft-model)")
    s.add_argument("--draft-model", default=None, help="a smaller GGUF with the served models' vocabulary")
    s.add_argument("--draft-tokens", type=int, default=8, help="at most this many drafts per verify pass (default 8)")
    s.add_argument("--prefill-chunk", type=int, default=PREFILL_CHUNK,
                   help=f"prompt tokens per stream in one step, 1..{EVAL_BATCH} (default {PREFILL_CHUNK}): smaller "
                        "keeps other streams flowing during a long prompt, larger evaluates prompts faster")
    s.add_argument("--batch-tokens", type=int, default=0,
                   help=f"tokens per forward pass, all streams together (decode tokens first, then prompt "
                        f"chunks), 1..{EVAL_BATCH} (default {EVAL_BATCH}, the core's most); 1 runs one stream per step")
    s.add_argument("-t", "--threads", type=int, default=0,
                   help="CPU threads per model (default: the CPUs available, at most 8; $REALM_THREADS)")
    s.add_argument("--idle-ttl", type=float, default=600.0, help="free sessions idle this many seconds (default 600)")
    s.add_argument("--rpm", type=_limit, default=0, help="default requests/min per tenant (default 0 = unlimited)")
    s.add_argument("--tpm", type=_limit, default=0,
                   help="default generated tokens/min per tenant (default 0 = unlimited)")
    s.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    s.add_argument("--grace", type=float, default=30.0,
                   help="on SIGTERM, seconds in-flight requests get to finish (default 30)")
    s.add_argument("--log-format", choices=["text", "json"], default="text", help="json: one JSON object per line")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument("--lora", action="append", type=_lora_spec, metavar="ID=PATH",
                   help="preload a LoRA adapter (llama.cpp GGUF) under an id for requests' 'lora' field; repeatable")
    s.add_argument("--admin-tenant", action="append", metavar="TENANT",
                   help="a tenant whose keys may load/unload adapters (POST /lora-adapters); repeatable "
                        "(with --no-auth: 'anonymous')")
    s.set_defaults(fn=cmd_serve)

    k = sub.add_parser("api-key", help="manage the server's API keys and tenants",
                       description="API keys for `realm serve`, stored as SHA-256 hashes in a SQLite file.")
    ksub = k.add_subparsers(dest="key_cmd", required=True)

    g = ksub.add_parser("generate", help="create a key for a tenant (printed once, alone on the last line)")
    g.add_argument("--tenant", help="the tenant the key belongs to")
    g.add_argument("--admin", action="store_true", help="an admin key (GET /v1/usage, /metrics), of no tenant")
    g.add_argument("--name", help="a label for the key")
    g.add_argument("--rpm", type=_limit, default=None, help="this key's requests/min (0 = unlimited)")
    g.add_argument("--tpm", type=_limit, default=None, help="this key's generated tokens/min (0 = unlimited)")
    g.add_argument("--db", "--keys", dest="keys", default=None, help=keys_help)
    g.set_defaults(fn=cmd_key_generate)

    ls = ksub.add_parser("list", help="list keys (never the keys themselves)")
    ls.add_argument("--tenant")
    ls.add_argument("--all", action="store_true", help="include revoked keys")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--db", "--keys", dest="keys", default=None, help=keys_help)
    ls.set_defaults(fn=cmd_key_list)

    for action, text in (("disable", "stop accepting a key (or all of a tenant's) until enabled"),
                         ("enable", "accept a disabled key again"),
                         ("revoke", "invalidate a key for good")):
        p = ksub.add_parser(action, help=text)
        p.add_argument("id", nargs="?", help="key id (from `list`) or the key itself")
        p.add_argument("--tenant", help="every key of this tenant")
        p.add_argument("--db", "--keys", dest="keys", default=None, help=keys_help)
        p.set_defaults(fn=cmd_key_state, action=action)

    lo = ksub.add_parser("lora", help="a tenant's default LoRA adapters (ids the server loaded), for requests naming none")
    lo.add_argument("--tenant", required=True)
    lo.add_argument("adapter", nargs="*", metavar="ID[:SCALE]")
    lo.add_argument("--clear", action="store_true", help="remove the tenant's default")
    lo.add_argument("--keys", default=None, help=keys_help)
    lo.set_defaults(fn=cmd_key_lora)
    lim = ksub.add_parser("limits", help="set rate limits of a key or a tenant")
    lim.add_argument("id", nargs="?", help="key id (per-key limits)")
    lim.add_argument("--tenant", help="the tenant's limits (for its keys without their own)")
    lim.add_argument("--rpm", type=_limit, default=None, help="requests/min (0 = unlimited; omit = default)")
    lim.add_argument("--tpm", type=_limit, default=None, help="generated tokens/min (0 = unlimited; omit = default)")
    lim.add_argument("--db", "--keys", dest="keys", default=None, help=keys_help)
    lim.set_defaults(fn=cmd_key_limits)

    u = sub.add_parser("usage", help="requests, tokens, latency and cost per tenant, key and model",
                       description="Usage recorded by `realm serve` in the key store (one row per finished request).")
    u.add_argument("--tenant", help="only this tenant")
    u.add_argument("--since", help="from a date (2026-12-01), time (2026-12-01T10:00, UTC), epoch, or 30m/24h/7d ago")
    fmt = u.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    u.add_argument("--prices", default=None, metavar="FILE", help="JSON price table (default: $REALM_PRICES)")
    u.add_argument("--db", "--keys", dest="keys", default=None, help=keys_help)
    u.set_defaults(fn=cmd_usage)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realm", description="Realm Web server and API keys.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    register(sub)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from ..errors import RealmError
        if isinstance(e, (RealmError, ValueError, OSError)):
            print(f"realm: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
