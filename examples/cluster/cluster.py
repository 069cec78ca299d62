#!/usr/bin/env python3
"""A local Realm cluster: PostgreSQL, Redis, N `realm serve` replicas and HAProxy, all real servers.

    python examples/cluster/cluster.py --replicas 3 --port 8080 [--model PATH] [--dir DIR]

prints an admin key and a tenant key, then serves at http://127.0.0.1:PORT/v1
until Ctrl-C, which stops everything (the data lives in DIR, a temporary
folder unless given). Needs Debian's postgresql-15, redis-server and haproxy
(scripts/setup.sh installs them). As root, PostgreSQL runs as the `postgres`
user (it refuses to run as root).

tests/test_cluster.py imports this file to start the same setup.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        if pred():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Postgres:
    """A throwaway PostgreSQL cluster in `root` on 127.0.0.1:port (trust auth, fsync off: for tests and demos)."""

    def __init__(self, root: Path, port: int | None = None, db: str = "realm") -> None:
        self.port = port or free_port()
        self.db = db
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # as root, the postgres user must reach its folder: a /tmp folder of its own (root's may be 0700)
        self._own = Path(tempfile.mkdtemp(prefix="realm-pg-")) if self._as else None
        if self._own:
            self._own.chmod(0o711)
        self.data = (self._own or Path(root)) / "pg"
        self.data.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.data, "postgres", "postgres")
        self.data.chmod(0o700)
        subprocess.run(self._as + [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "realm",
                                   "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        self.start()
        subprocess.run(self._as + [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "realm",
                                   self.db], check=True)

    @property
    def url(self) -> str:
        return f"postgresql://realm@127.0.0.1:{self.port}/{self.db}"

    def _ctl(self, *args: str) -> None:
        # pg_ctl, not a Popen of postgres: runuser would not pass our signals on to it
        subprocess.run(self._as + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args],
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._ctl("-l", str(self.data / "postgres.log"), "-o", opts, "start")

    def stop(self) -> None:
        """A "fast" shutdown: open sessions are ended, then the server exits."""
        if (self.data / "postmaster.pid").exists():
            self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        """Stop, and delete the data if it lives in a folder of its own."""
        self.stop()
        if self._own:
            shutil.rmtree(self._own, ignore_errors=True)


class Redis:
    """redis-server on 127.0.0.1:port, nothing persisted."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.start()

    def start(self) -> None:
        log = open(self.root / "redis.log", "ab")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.root)],
                                     stdout=log, stderr=log)
        _wait(lambda: _port_open(self.port), 30, "redis-server", self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Replica:
    """One `realm serve` process sharing the store (db: a URL or SQLite path) and the limiter (redis: None = its own)."""

    def __init__(self, root: Path, index: int, db: str, redis: str | None, args: list[str],
                 port: int | None = None) -> None:
        self.index = index
        self.port = port or free_port()
        self.log_path = Path(root) / f"replica{index}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "realm_web.server.cli", "serve", "--port", str(self.port),
                                      "--db", db, *(["--redis", redis] if redis else []), "--log-format", "json",
                                      *args],
                                     cwd=str(ROOT), env=env, stdout=log, stderr=log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120) -> None:
        import urllib.request

        def ready() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        try:
            _wait(ready, timeout, f"replica {self.index}", self.proc)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}; its log:\n{self.log_path.read_text()[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL: the replica dies mid-work (no drain)."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class HAProxy:
    def __init__(self, root: Path, replicas: list[Replica], port: int | None = None) -> None:
        self.port = port or free_port()
        servers = "\n".join(f"    server r{r.index} 127.0.0.1:{r.port} check" for r in replicas)
        cfg = (HERE / "haproxy.cfg").read_text().replace("${BIND}", f"127.0.0.1:{self.port}").replace(
            "${SERVERS}", servers)
        self.cfg = Path(root) / "haproxy.cfg"
        self.cfg.write_text(cfg)
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], check=True)
        log = open(Path(root) / "haproxy.log", "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stdout=log, stderr=log)
        _wait(lambda: _port_open(self.port), 30, "haproxy", self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Cluster:
    """Everything, started in order (store, limiter, replicas, balancer); stop() in reverse."""

    def __init__(self, root: str | os.PathLike, replicas: int = 3, serve_args: list[str] | None = None,
                 port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.parts: list = []
        try:
            self.pg = self._keep(Postgres(self.root))
            self.redis = self._keep(Redis(self.root))
            self.replicas = [self._keep(Replica(self.root, i, self.pg.url, self.redis.url, serve_args or []))
                             for i in range(replicas)]
            for r in self.replicas:
                r.wait_ready()
            self.lb = self._keep(HAProxy(self.root, self.replicas, port))
        except BaseException:
            self.stop()
            raise

    def _keep(self, part):
        self.parts.append(part)
        return part

    def realm(self, *args: str) -> subprocess.CompletedProcess:
        """`realm ...` (the CLI) against the cluster's store."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.run([sys.executable, "-m", "realm_web.cli", *args, "--db", self.pg.url],
                              cwd=str(ROOT), env=env, capture_output=True, text=True)

    def stop(self) -> None:
        for part in reversed(self.parts):
            try:
                getattr(part, "remove", part.stop)()
            except Exception as e:   # stop the rest anyway
                print(f"stopping {type(part).__name__}: {e}", file=sys.stderr)
        self.parts.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--port", type=int, default=8080, help="the balancer's port (default 8080)")
    ap.add_argument("--model", help="a GGUF for every replica (default: the built-in model)")
    ap.add_argument("--dir", help="where the data and logs go (default: a temporary folder, removed on exit)")
    ap.add_argument("--rpm", type=int, default=0, help="the demo tenant's requests/min (default unlimited)")
    a = ap.parse_args(argv)
    root = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="realm-cluster-"))
    serve_args = ["--model", a.model] if a.model else []
    print(f"starting PostgreSQL, Redis, {a.replicas} replicas and HAProxy in {root} ...", flush=True)
    c = Cluster(root, a.replicas, serve_args, a.port)
    try:
        admin = c.realm("api-key", "generate", "--admin").stdout.strip().splitlines()[-1]
        gen = ["api-key", "generate", "--tenant", "demo"] + (["--rpm", str(a.rpm)] if a.rpm else [])
        tenant = c.realm(*gen).stdout.strip().splitlines()[-1]
        print(f"balancer:   {c.lb.url}/v1  (replicas: {', '.join(r.url for r in c.replicas)})")
        print(f"PostgreSQL: {c.pg.url}\nRedis:      {c.redis.url}")
        print(f"admin key:  {admin}\ntenant key: {tenant}  (tenant 'demo')")
        print("Ctrl-C stops everything.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        c.stop()
        if not a.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)   # also when started with SIGINT ignored (a background job)
    sys.exit(main())
