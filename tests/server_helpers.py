"""Helpers shared by tests/test_server*.py: a server on a free 127.0.0.1 port, keys, metrics."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_thread_server(**cfg):
    """A ServerThread on a free port (caller stops it)."""
    from realm_web.server import ServerConfig, ServerThread
    cfg.setdefault("port", 0)
    cfg.setdefault("log_level", "warning")
    return ServerThread(ServerConfig(**cfg)).start()


def make_keys(path, tenants, **limits) -> dict[str, str]:
    """One key per tenant in a new keys file: {tenant: plain key}."""
    from realm_web.server.keys import KeyStore
    ks = KeyStore(path)
    try:
        return {t: ks.generate(t, **limits)[1] for t in tenants}
    finally:
        ks.close()


def metrics(url: str) -> dict[tuple, float]:
    """/metrics as {(name, ((label, value), ...)): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(url: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for (n, lab), v in metrics(url).items():
        if n == name and all(dict(lab).get(k) == v2 for k, v2 in labels.items()):
            total += v
    return total


def wait_for(pred, timeout: float = 30.0, step: float = 0.05):
    """Poll pred() until truthy (returns it) or time out (returns the last value). Not a timing assertion:
    the bound only keeps a broken server from hanging the suite."""
    t_end = time.monotonic() + timeout
    v = pred()
    while not v and time.monotonic() < t_end:
        time.sleep(step)
        v = pred()
    return v


def spawn_cli_server(*args, port: int | None = None, env=None) -> tuple[subprocess.Popen, str]:
    """`python -m realm_web.server.cli serve ...` in a subprocess; returns (process, base url) once ready."""
    port = port or free_port()
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-m", "realm_web.server.cli", "serve", "--port", str(port), *args],
                         cwd=str(ROOT), env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if p.poll() is not None:
            return True
        try:
            return httpx.get(url + "/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(ready, timeout=120, step=0.1)
    if p.poll() is not None:
        raise RuntimeError(f"server exited with {p.returncode}: {p.stdout.read()}")
    return p, url


def last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1].strip()


KEY_RE = re.compile(r"^sk-realm-[0-9a-f]{8}-[0-9a-f]{48}$")
