"""`realm web`: a local web server for the browser hosts.

    realm web                          # http://127.0.0.1:8000/  (the chat page)
    realm web --port 8080 --model my.gguf

It serves, from one origin, with the COOP/COEP headers that SharedArrayBuffer
and wasm threads need:

    /                     host/index.html: the chat page (JS SDK)
    /pyodide.html         the Pyodide host: the Python API running in the browser
    /<file>               anything else in host/
    /js-sdk/...           the JS SDK (js-sdk/, its node_modules included)
    /pyodide/...          the npm package `pyodide` (host/node_modules/pyodide)
    /wllama/...           the npm package `@wllama/wllama` (benchmarks only)
    /realm.wasm           the core (realm_web/wasm/realm.wasm, or $REALM_WASM), also at
                          /js-sdk/wasm/realm.wasm where the JS SDK looks for it; the
                          same for realm-mt.wasm, realm-relaxed.wasm, realm-mt-relaxed.wasm
    /wgsl/...             the WGSL kernels
    /models/default.gguf  the default model (or --model), with Range support
    /py/wheels.json       pure-Python wheels for Pyodide: realm_web, jinja2,
    /py/<name>.whl        markupsafe (made on the fly from what is installed here)

Nothing is fetched from the network at run time: Pyodide and wllama come from
`npm install` in host/ (see host/package.json).
"""
from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import importlib.metadata
import io
import json
import mimetypes
import os
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import RealmError

PKG = Path(__file__).resolve().parent


def _root() -> Path:
    """Where host/ and js-sdk/ are: $REALM_WEB_ROOT, a checkout (beside the package), or
    realm_web/static/ (a layout an installed wheel can carry)."""
    env = os.environ.get("REALM_WEB_ROOT")
    if env:
        return Path(env)
    if (PKG.parent / "host" / "index.html").is_file():
        return PKG.parent
    return PKG / "static"


ROOT = _root()
HOST_DIR = ROOT / "host"
JS_SDK_DIR = ROOT / "js-sdk"
NODE_MODULES = HOST_DIR / "node_modules"

TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".wasm": "application/wasm",
    ".wgsl": "text/plain; charset=utf-8", ".gguf": "application/octet-stream",
    ".whl": "application/zip", ".zip": "application/zip", ".png": "image/png", ".svg": "image/svg+xml",
    ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8",
    ".ts": "text/plain; charset=utf-8", ".data": "application/octet-stream",
}

SECURITY_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


# build.py's four modules, and the variable that points each at another build
WASM_FILES = {"realm.wasm": "REALM_WASM", "realm-mt.wasm": "REALM_WASM_MT",
              "realm-relaxed.wasm": "REALM_WASM_RELAXED", "realm-mt-relaxed.wasm": "REALM_WASM_MT_RELAXED",
              # the wasm32 builds, for engines without Memory64 (the JS SDK picks them by detection)
              "realm32.wasm": "REALM_WASM32", "realm32-relaxed.wasm": "REALM_WASM32_RELAXED"}


def wasm_path(name: str = "realm.wasm") -> Path | None:
    """One of WASM_FILES: its variable, else the package's build. None for a relaxed-SIMD
    build when $REALM_WASM names another realm.wasm but no relaxed twin (the page then
    falls back to the plain build, which is the one asked for)."""
    env = os.environ.get(WASM_FILES[name])
    if env and env.lower() not in ("auto", "wasm32", "wasm64"):  # those pick a width (wasm_host), not a file
        return Path(env)
    if "relaxed" in name and os.environ.get("REALM_WASM", "").lower() not in ("", "auto", "wasm32", "wasm64"):
        return None
    return PKG / "wasm" / name


def wgsl_dir() -> Path:
    built = PKG / "wgsl"
    return built if built.is_dir() and any(built.iterdir()) else ROOT / "wgsl"


# ----------------------------------------------------------------- wheels

def _wheel(dist: str, version: str, files: list[tuple[str, bytes]], metadata: str | None = None) -> tuple[str, bytes]:
    """A pure-Python wheel (py3-none-any) holding `files` (archive name, bytes)."""
    norm = dist.replace("-", "_").lower()
    info = f"{norm}-{version}.dist-info"
    meta = metadata or f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    files = list(files) + [
        (f"{info}/METADATA", meta.encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: realm_web.web\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(zipfile.ZipInfo(f"{info}/RECORD", (2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return f"{norm}-{version}-py3-none-any.whl", buf.getvalue()


_PURE = (".py", ".pyi", "py.typed")


def _package_files(top: Path, prefix: str) -> list[tuple[str, bytes]]:
    out = []
    for p in sorted(top.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.name.endswith(_PURE):
            out.append((f"{prefix}/{p.relative_to(top).as_posix()}", p.read_bytes()))
    return out


def realm_wheel() -> tuple[str, bytes]:
    """realm_web's Python files (realm.wasm stays a separate static file the JS side streams)."""
    from . import __version__
    return _wheel("realm-web", __version__, _package_files(PKG, "realm_web"))


def dist_wheel(name: str) -> tuple[str, bytes]:
    """A pure wheel of an installed distribution's Python files (C speedups left out:
    markupsafe falls back to its pure-Python implementation)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise RealmError(f"{name} is not installed here (pip install {name}); Pyodide needs its files") from None
    files = []
    for f in dist.files or []:
        parts = f.parts
        if not parts or parts[0].endswith(".dist-info") or parts[0] == ".." or "__pycache__" in parts:
            continue
        if not f.name.endswith(_PURE):
            continue
        files.append((f.as_posix(), Path(dist.locate_file(f)).read_bytes()))
    if not files:
        raise RealmError(f"{name} {dist.version}: no Python files found in its installation")
    return _wheel(dist.metadata["Name"], dist.version, files, dist.read_text("METADATA"))


def write_wheels(directory) -> list[Path]:
    """Write the wheels Pyodide installs into `directory` (for Pyodide outside the browser)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in Wheels().files().items():
        (d / name).write_bytes(data)
        out.append(d / name)
    return out


class Wheels:
    """The wheels Pyodide installs, built once per server (on first request)."""

    DISTS = ("jinja2", "markupsafe")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, bytes] | None = None

    def files(self) -> dict[str, bytes]:
        with self._lock:
            if self._files is None:
                made = [realm_wheel()] + [dist_wheel(d) for d in self.DISTS]
                self._files = dict(made)
            return self._files

    def index(self) -> bytes:
        return json.dumps({"wheels": [f"/py/{n}" for n in self.files()]}).encode()


# ----------------------------------------------------------------- server

def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range, or None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError("only one bytes range is supported")
    a, _, b = spec.strip().partition("-")
    if a == "":
        n = int(b)
        if n <= 0:
            return None
        return max(0, size - n), size - 1
    start = int(a)
    end = int(b) if b else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "realm-web"
    server: "RealmWebServer"

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            sys.stderr.write("realm web: %s %s\n" % (self.address_string(), fmt % args))

    def _headers(self, status: int, ctype: str, length: int, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send_bytes(self, data: bytes, ctype: str, status: int = 200, extra: dict | None = None) -> None:
        self._headers(status, ctype, len(data), {"Cache-Control": "no-cache", **(extra or {})})
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, msg: str) -> None:
        self._send_bytes((msg + "\n").encode(), "text/plain; charset=utf-8", status)

    def _send_file(self, path: Path) -> None:
        try:
            f = open(path, "rb")
        except OSError:
            return self._error(404, f"not found: {self.path}")
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            etag = f'"{st.st_mtime_ns:x}-{size:x}"'
            ctype = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            extra = {"ETag": etag, "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                     "Cache-Control": "no-cache", "Accept-Ranges": "bytes"}
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                for k, v in {**SECURITY_HEADERS, **extra}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng and self.headers.get("If-Range", etag) == etag:
                try:
                    r = _parse_range(rng, size)
                except ValueError:
                    r = (0, size - 1)
                if r is None:
                    self._headers(416, "text/plain", 0, {"Content-Range": f"bytes */{size}"})
                    return
                start, end, status = r[0], r[1], 206
                extra["Content-Range"] = f"bytes {start}-{end}/{size}"
            n = end - start + 1 if size else 0
            self._headers(status, ctype, n, extra)
            if self.command == "HEAD" or n == 0:
                return
            try:
                self.wfile.flush()
                self.connection.sendfile(f, start, n)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _static(self, root: Path, rel: str) -> None:
        rel = rel.lstrip("/")
        try:
            target = (root / rel).resolve()
            target.relative_to(root.resolve())
        except (ValueError, OSError):
            return self._error(403, "forbidden")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return self._error(404, f"not found: {self.path}")
        self._send_file(target)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        from urllib.parse import unquote
        path = unquote(path)
        srv = self.server
        try:
            if path in ("/", "/index.html"):
                return self._static(HOST_DIR, "index.html")
            # the JS SDK looks beside itself (js-sdk/wasm/, as npm packs it) or in the repo's build
            if path.rsplit("/", 1)[-1] in WASM_FILES and path.rsplit("/", 1)[0] in (
                    "", "/js-sdk/wasm", "/realm_web/wasm"):
                p = wasm_path(path.rsplit("/", 1)[-1])
                if p is None or not p.is_file():
                    return self._error(404, f"{p or path} is missing: run `python build.py`")
                return self._send_file(p)
            if path == "/models/default.gguf":
                try:
                    return self._send_file(srv.model_path())
                except RealmError as e:
                    return self._error(404, str(e))
            if path == "/py/wheels.json":
                return self._send_bytes(srv.wheels.index(), "application/json")
            if path.startswith("/py/"):
                data = srv.wheels.files().get(path[4:])
                return self._send_bytes(data, "application/zip") if data else self._error(404, "no such wheel")
            for prefix, root in srv.mounts:
                if path.startswith(prefix):
                    return self._static(root, path[len(prefix):])
            return self._static(HOST_DIR, path)
        except RealmError as e:
            return self._error(500, str(e))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class RealmWebServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, model: str | os.PathLike | None = None, verbose: bool = False):
        super().__init__(addr, Handler)
        self._model = Path(model) if model else None
        self.verbose = verbose
        self.wheels = Wheels()
        self.mounts = [
            ("/js-sdk/", JS_SDK_DIR),
            ("/pyodide/", NODE_MODULES / "pyodide"),
            ("/wllama/", NODE_MODULES / "@wllama" / "wllama"),
            ("/wgsl/", wgsl_dir()),
        ]

    def model_path(self) -> Path:
        if self._model is None:
            from .default_model import default_model_path
            self._model = default_model_path()
        if not self._model.is_file():
            raise RealmError(f"no such model file: {self._model}")
        return self._model

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(host: str = "127.0.0.1", port: int = 8000, model=None, verbose: bool = False) -> RealmWebServer:
    """A server bound to host:port (port 0 picks a free one); call serve_forever() or start()."""
    return RealmWebServer((host, port), model=model, verbose=verbose)


def start(host: str = "127.0.0.1", port: int = 0, model=None, verbose: bool = False) -> RealmWebServer:
    """A server running in a daemon thread (tests, benchmarks); stop it with .shutdown()."""
    srv = make_server(host, port, model, verbose)
    threading.Thread(target=srv.serve_forever, name="realm-web", daemon=True).start()
    return srv


def check_assets() -> list[str]:
    """What is missing for the pages to work (empty when all is there)."""
    missing = []
    if not (HOST_DIR / "index.html").is_file():
        missing.append(f"{HOST_DIR}/index.html (the chat page; REALM_WEB_ROOT points at a checkout)")
    if not (NODE_MODULES / "pyodide" / "pyodide.mjs").is_file():
        missing.append(f"Pyodide for /pyodide.html: run  npm install --prefix {HOST_DIR}")
    if not wasm_path().is_file():
        missing.append(f"{wasm_path()}: run  python build.py")
    if not (JS_SDK_DIR / "src").is_dir():
        missing.append(f"{JS_SDK_DIR}/src (the JS SDK the chat page uses)")
    return missing


def serve(host: str = "127.0.0.1", port: int = 8000, model=None, verbose: bool = False,
          open_browser: bool = False) -> None:
    """Serve until interrupted."""
    srv = make_server(host, port, model, verbose)
    for m in check_assets():
        print(f"realm web: warning: missing {m}", file=sys.stderr)
    print(f"realm web: serving on {srv.url}  (chat page; Python in the browser: {srv.url}pyodide.html)", flush=True)
    if open_browser:
        import webbrowser
        webbrowser.open(srv.url)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


def cmd_web(args) -> int:
    serve(args.host, args.port, model=args.model, verbose=args.verbose, open_browser=args.open)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `realm web` to the `realm` command's subparsers."""
    p = subparsers.add_parser("web", help="serve the chat page (and Python in the browser) on a local port")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--model", help="GGUF served as /models/default.gguf (default: the built-in SmolLM2-135M-Instruct)")
    p.add_argument("--open", action="store_true", help="open the chat page in a browser")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.set_defaults(fn=cmd_web)
    return p


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="realm")
    register(ap.add_subparsers(dest="cmd", required=True))
    a = ap.parse_args(["web"] + sys.argv[1:])
    sys.exit(a.fn(a))
