"""Bytes on the wire: compact JSON, JSON and error responses, SSE frames, embedding vectors."""
from __future__ import annotations

import base64
import json
import struct
from typing import Any, Sequence

from starlette.responses import Response

from .errors import APIError

SSE_DONE = b"data: [DONE]\n\n"


def dumps(o: Any) -> str:
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def json_response(obj: Any, request_id: str | None = None, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json",
                    headers={"x-request-id": request_id} if request_id else None)


def error_response(e: APIError, request_id: str | None = None) -> Response:
    headers = dict(e.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(dumps(e.body()), status_code=e.status, headers=headers, media_type="application/json")


def sse_event(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def embedding(vec: Sequence[float], encoding_format: str) -> list[float] | str:
    """An embedding as OpenAI sends it: floats, or base64 of little-endian f32."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
    return [float(x) for x in vec]
