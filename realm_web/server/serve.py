"""Running the server: `run(config)` in the foreground (signals, graceful drain),
`ServerThread(config)` in a background thread (tests, benchmarks, notebooks).

Shutdown (SIGTERM or SIGINT, once): the listening socket closes at once (no new
connections), requests on open connections get 503, /ready turns 503, and
in-flight requests (HTTP streams and WebSocket requests alike) run to the end.
When none is left, or after `grace` seconds (what is still running is then
cancelled), the server exits with status 0. A second signal exits at once.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn

from .app import RealmServer
from .config import ServerConfig
from .logs import LOGGER, setup as setup_logging

log = logging.getLogger(LOGGER)


class _Uvicorn(uvicorn.Server):
    """uvicorn, with a drain phase before its own shutdown."""

    def __init__(self, config: uvicorn.Config, realm: RealmServer, grace: float) -> None:
        super().__init__(config)
        self.realm = realm
        self.grace = grace
        self._drain_t0: float | None = None
        self._listeners_closed = False
        self.exit_code = 0

    def handle_exit(self, sig, frame) -> None:   # runs in the signal handler: only set flags
        if self._drain_t0 is None:
            self._drain_t0 = time.monotonic()
            self.realm.begin_drain()
        else:
            self.force_exit = True
            self.should_exit = True

    def drain(self) -> None:
        """Begin a graceful stop (as SIGTERM does), from any thread."""
        if self._drain_t0 is None:
            self._drain_t0 = time.monotonic()
            self.realm.begin_drain()

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self.realm.load_error:
            self.exit_code = 1
            return True
        if self._drain_t0 is not None:
            if not self._listeners_closed:
                self._listeners_closed = True
                for s in getattr(self, "servers", []):
                    s.close()                  # no new connections from now on
            if self.realm.in_flight == 0:
                log.info("drained: exiting")
                return True
            if time.monotonic() - self._drain_t0 > self.grace:
                log.warning("grace period of %.0f s over: cancelling %d request(s)", self.grace, self.realm.in_flight)
                self.realm.cancel_all()
                await asyncio.sleep(0.2)       # let the cancelled streams end their responses
                return True
        return False


def _uv_config(realm: RealmServer, cfg: ServerConfig, sock: socket.socket | None = None) -> uvicorn.Config:
    return uvicorn.Config(realm.app, host=cfg.host, port=cfg.port, log_config=None, access_log=False,
                          lifespan="on", ws="websockets-sansio", ws_max_size=cfg.max_body, timeout_graceful_shutdown=5,
                          server_header=False)


def run(cfg: ServerConfig) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    setup_logging(cfg.log_format, cfg.log_level)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the server is reachable from other machines", cfg.host)
    realm = RealmServer(cfg)
    if cfg.no_auth:
        bar = "!" * 72
        for line in (bar, "!! --no-auth: NO API KEYS ARE CHECKED. Anyone who can reach "
                          f"{cfg.host}:{cfg.port}", "!! can use every model. Use it for local development only.",
                     bar):
            log.warning(line)
    else:
        log.info("API keys from %s", realm.keys.name)
    server = _Uvicorn(_uv_config(realm, cfg), realm, cfg.grace)
    log.info("listening on http://%s:%d (OpenAI base URL: http://%s:%d/v1)", cfg.host, cfg.port, cfg.host, cfg.port)
    server.run()
    if realm.load_error:
        return 1
    return server.exit_code


class ServerThread:
    """A server on a background thread, e.g. for tests:

        with ServerThread(ServerConfig(port=0, no_auth=True)) as srv:
            OpenAI(base_url=srv.base_url, api_key="x")...
    """

    def __init__(self, cfg: ServerConfig, ready_timeout: float = 120.0) -> None:
        self.cfg = cfg
        self.ready_timeout = ready_timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((cfg.host, cfg.port))
        self.port = self.sock.getsockname()[1]
        cfg.port = self.port
        self.realm = RealmServer(cfg)
        self.server = _Uvicorn(_uv_config(self.realm, cfg), self.realm, cfg.grace)
        self.thread = threading.Thread(target=self._run, name="realm-server", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as e:  # pragma: no cover - surfaced by start()
            self.error = e

    def start(self) -> "ServerThread":
        self.thread.start()
        t_end = time.monotonic() + self.ready_timeout
        while time.monotonic() < t_end:
            if self.error or not self.thread.is_alive():
                raise RuntimeError(f"the server failed to start: {self.error or self.realm.load_error}")
            if self.realm.load_error:
                self.stop()
                raise RuntimeError(f"the server failed to load its models: {self.realm.load_error}")
            if self.server.started and self.realm.loaded:
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("the server did not become ready")

    def drain(self) -> None:
        self.server.drain()

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
