"""A local stand-in for the Hugging Face Hub's file endpoints (HF_ENDPOINT points at it): what
huggingface_hub's downloads use, served from memory, with faults on demand.

    HEAD/GET /{owner}/{name}/resolve/{revision}/{file}
        200 (or 206 for `Range: bytes=N-`), X-Repo-Commit, ETag and X-Linked-Etag (the SHA-256, as the Hub
        sends for LFS files), X-Linked-Size, Content-Length; 404 with X-Error-Code RepoNotFound / EntryNotFound.

Faults: drop_after=N closes the first GET of a file after N body bytes (a dropped connection);
corrupt=True serves different bytes than the etag promises.
"""
from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_PATH = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class MockHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []   # (method, path, Range)
        self.drop_after: int | None = None
        self.corrupt = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                m = _PATH.match(self.path.split("?")[0])
                if not m:
                    return self._404("RepoNotFound")
                repo, _rev, name = m.groups()
                if not any(r == repo for r, _ in hub.files):
                    return self._404("RepoNotFound")
                data = hub.files.get((repo, name))
                if data is None:
                    return self._404("EntryNotFound")
                sha = hashlib.sha256(data).hexdigest()
                if hub.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                rng = self.headers.get("Range")
                if rng and body:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                part = data[start:]
                if hub.drop_after is not None and not start:
                    cut, hub.drop_after = hub.drop_after, None
                    self.wfile.write(part[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(part)

            def _404(self, code: str) -> None:
                msg = b'{"error":"not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(msg)

            def do_HEAD(self):
                self._serve(False)

            def do_GET(self):
                self._serve(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "MockHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
