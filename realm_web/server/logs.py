"""Structured logs: text or JSON lines, with a request id on every request's line.

    realm serve --log-format json     # one JSON object per line on stderr

Each finished request logs one line (message "request") with request_id,
method, path, tenant, model, status, duration_ms and, for generations,
prompt/completion tokens, finish_reason and ttft_ms. The request id is the
client's `X-Request-Id` when it sent a sane one, else generated; it is returned
in the `x-request-id` response header.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time

LOGGER = "realm_web.server"
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id(client_value: str | None = None) -> str:
    if client_value and _SANE_ID.match(client_value):
        return client_value
    return "req_" + secrets.token_hex(12)


class JSONFormatter(logging.Formatter):
    def format(self, r: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r.created)) + f".{int(r.msecs):03d}Z",
               "level": r.levelname.lower(), "logger": r.name, "msg": r.getMessage()}
        for k, v in r.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if r.exc_info:
            out["exc"] = self.formatException(r.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, r: logging.LogRecord) -> str:
        base = f"{time.strftime('%H:%M:%S', time.localtime(r.created))} {r.levelname.lower():7s} {r.getMessage()}"
        extra = [f"{k}={v}" for k, v in r.__dict__.items() if k not in _RESERVED and not k.startswith("_")]
        s = base + (" " + " ".join(extra) if extra else "")
        if r.exc_info:
            s += "\n" + self.formatException(r.exc_info)
        return s


def setup(fmt: str = "text", level: str = "info", stream=None) -> logging.Logger:
    """Configure the server's logger (and uvicorn's) to write `fmt` ("text" or "json") lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    lvl = getattr(logging, level.upper(), logging.INFO)
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(lvl)
        lg.propagate = False
    return logging.getLogger(LOGGER)
