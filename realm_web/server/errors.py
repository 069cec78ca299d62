"""OpenAI-shaped API errors.

Every failure a client can cause reaches it as JSON in OpenAI's shape, with the
offending field named in `param`:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}
"""
from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error with an HTTP status and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 type: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key")


def model_not_found(model: str, known: list[str]) -> APIError:
    return APIError(404, f"The model '{model}' does not exist. Available: {', '.join(known) or 'none'}",
                    param="model", code="model_not_found")


def not_found(message: str) -> APIError:
    return APIError(404, message, code="not_found")


def too_large(limit: int) -> APIError:
    return APIError(413, f"The request body exceeds this server's limit of {limit:,} bytes", param=None,
                    code="request_too_large")


def rate_limited(message: str, retry_after: float, kind: str = "requests") -> APIError:
    """kind: "requests" or "tokens" (OpenAI puts which limit was hit in `type`)."""
    secs = max(1, int(-(-retry_after // 1)))  # whole seconds, rounded up, at least 1
    return APIError(429, message, type=kind, code="rate_limit_exceeded",
                    headers={"Retry-After": str(secs), "retry-after-ms": str(max(1, int(retry_after * 1000)))})


def unavailable(message: str) -> APIError:
    return APIError(503, message, type="server_error", code="unavailable")


def server_error(message: str) -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")
