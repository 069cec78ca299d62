"""The server's database: SQLite (a file, the default) or PostgreSQL (a URL), behind one small interface.

Callers write SQL once, with `?` placeholders and the subset both engines
speak (ON CONFLICT upserts, DOUBLE PRECISION, BIGINT); `Database.q` returns
rows, `Database.x` the affected row count. The schema is versioned
(migrations.py), applied on open, each version in one transaction.

A PostgreSQL connection that breaks (server restarted, network) is reopened on
the next call; while the server cannot be reached every call raises
StoreUnavailable, which names the store (the server turns it into a 503).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from .migrations import MIGRATIONS


class StoreUnavailable(ConnectionError):
    """The database cannot be reached or answered with an operational error."""


class Conflict(Exception):
    """A unique or primary key constraint refused a write."""


def is_url(spec: str | os.PathLike | None) -> bool:
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))


def open_database(spec: str | os.PathLike) -> "Database":
    """A postgresql:// URL, or the path of a SQLite file (created, with its folder, if missing)."""
    if is_url(spec):
        return PostgresDatabase(str(spec))
    return SQLiteDatabase(Path(spec).expanduser())


class Database:
    name: str   # shown in errors and `realm api-key generate`

    def q(self, sql: str, args: tuple = ()) -> list:
        raise NotImplementedError

    def x(self, sql: str, args: tuple = ()) -> int:
        raise NotImplementedError

    def script(self, statements: list[str]) -> None:
        """Run statements in one transaction."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def migrate(self) -> int:
        """Apply the migrations not applied yet; returns the schema version."""
        self._lock_schema(True)
        try:
            return self._migrate()
        finally:
            self._lock_schema(False)

    def _lock_schema(self, take: bool) -> None:
        """Keep other processes from migrating at the same time (SQLite: its write lock does)."""

    def _migrate(self) -> int:
        self.x("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION)")
        def applied() -> set:
            return {r[0] for r in self.q("SELECT version FROM schema_version")}
        have = applied()
        for version, statements in MIGRATIONS:
            if version in have:
                continue
            try:
                self.script(list(statements) + [
                    f"INSERT INTO schema_version (version, applied) VALUES ({int(version)}, {time.time()!r})"])
            except (Conflict, StoreUnavailable):
                if version not in applied():   # else another process applied it at the same time
                    raise
        return max(v for v, _ in MIGRATIONS)


class SQLiteDatabase(Database):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        new = not path.exists()
        if new:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=10, check_same_thread=False, isolation_level=None)
        if new:
            try:
                os.chmod(path, 0o600)
            except OSError:
                pass
        with self._lock:
            self._db.execute("PRAGMA busy_timeout = 10000")
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                pass

    def _run(self, sql: str, args: tuple):
        try:
            return self._db.execute(sql, args)
        except sqlite3.IntegrityError as e:
            raise Conflict(str(e)) from None
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"the key store {self.name} failed: {e}") from None

    def q(self, sql: str, args: tuple = ()) -> list:
        with self._lock:
            return self._run(sql, args).fetchall()

    def x(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._run(sql, args).rowcount

    def script(self, statements: list[str]) -> None:
        with self._lock:
            self._run("BEGIN IMMEDIATE", ())
            try:
                for s in statements:
                    self._run(s, ())
                self._run("COMMIT", ())
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresDatabase(Database):
    """One autocommit connection, serialized by a lock; reopened after it breaks."""

    CONNECT_TIMEOUT = 3   # seconds: a request waits at most this long for an unreachable server

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise RuntimeError("PostgreSQL needs psycopg 3:  pip install 'psycopg[binary]'") from None
        self._pg = psycopg
        self.url = url
        u = urlsplit(url)
        self.name = f"PostgreSQL at {u.hostname or 'localhost'}:{u.port or 5432}{u.path or ''}"
        self._lock = threading.Lock()
        self._conn = None
        with self._lock:
            self._connection()   # fail at once on a wrong URL

    def _connection(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = self._pg.connect(self.url, autocommit=True, connect_timeout=self.CONNECT_TIMEOUT)
            except self._pg.OperationalError as e:
                self._conn = None
                raise StoreUnavailable(f"the key store ({self.name}) is unreachable: "
                                       f"{str(e).strip().splitlines()[0]}") from None
        return self._conn

    def _run(self, fn):
        for attempt in (0, 1):
            conn = self._connection()
            try:
                return fn(conn)
            except self._pg.errors.UniqueViolation as e:
                raise Conflict(str(e)) from None
            except self._pg.OperationalError as e:
                # a connection from before a server restart fails once: reconnect and retry once
                try:
                    conn.close()
                except Exception:
                    pass
                self._conn = None
                if attempt:
                    raise StoreUnavailable(f"the key store ({self.name}) failed: "
                                           f"{str(e).strip().splitlines()[0]}") from None

    _SCHEMA_LOCK = 0x7265616C6D   # any constant: the advisory lock replicas take while migrating

    def _lock_schema(self, take: bool) -> None:
        # session-level advisory lock on our one connection: a second replica starting waits here
        self.q(f"SELECT pg_advisory_{'lock' if take else 'unlock'}({self._SCHEMA_LOCK})")

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def q(self, sql: str, args: tuple = ()) -> list:
        with self._lock:
            return self._run(lambda c: c.execute(self._sql(sql), args).fetchall())

    def x(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._run(lambda c: c.execute(self._sql(sql), args).rowcount)

    def script(self, statements: list[str]) -> None:
        def run(c):
            with c.transaction():
                for s in statements:
                    c.execute(s)
        with self._lock:
            self._run(run)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
