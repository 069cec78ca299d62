"""`realm serve`: an OpenAI-compatible, multi-tenant HTTP and WebSocket server.

    from realm_web.server import ServerConfig, ServerThread
    with ServerThread(ServerConfig(port=0, no_auth=True)) as srv:
        print(srv.base_url)          # point any OpenAI client here

See docs/SERVER.md. Modules: app (assembly), config (ServerConfig), routes
(HTTP handlers), ws (the WebSocket protocol), auth (keys -> tenants, rate-limit
admission), models (model loading), completion and embeddings (requests ->
scheduler jobs -> OpenAI objects), sse, encoding (bytes on the wire),
disconnect, context (per-request logs and metrics), schemas (validation),
scheduler (sessions, round-robin decoding), keys (the key store) over db
(SQLite or PostgreSQL) and migrations (its schema), usage (metering, cost),
ratelimit and ratelimit_redis (token buckets, per process or in Redis), metrics
(Prometheus), logs (structured logging), serve (runners), cli (`realm serve`,
`realm api-key`, `realm usage`).
"""
from __future__ import annotations

__all__ = ["ServerConfig", "RealmServer", "ServerThread", "run"]


def __getattr__(name):
    if name == "ServerConfig":
        from .config import ServerConfig
        return ServerConfig
    if name == "RealmServer":
        from .app import RealmServer
        return RealmServer
    if name in ("ServerThread", "run"):
        from . import serve
        return getattr(serve, name)
    raise AttributeError(name)
