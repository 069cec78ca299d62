"""`realm serve`: an OpenAI-compatible, multi-tenant HTTP and WebSocket server.

    from realm_web.server import ServerConfig, ServerThread
    with ServerThread(ServerConfig(port=0, no_auth=True)) as srv:
        print(srv.base_url)          # point any OpenAI client here

See docs/SERVER.md. Modules: app (routes), schemas (validation), scheduler
(sessions, round-robin decoding), keys (SQLite key store), ratelimit (token
buckets), metrics (Prometheus), logs (structured logging), serve (runners),
cli (`realm serve`, `realm api-key`).
"""
from __future__ import annotations

__all__ = ["ServerConfig", "RealmServer", "ServerThread", "run"]


def __getattr__(name):
    if name in ("ServerConfig", "RealmServer"):
        from . import app
        return getattr(app, name)
    if name in ("ServerThread", "run"):
        from . import serve
        return getattr(serve, name)
    raise AttributeError(name)
