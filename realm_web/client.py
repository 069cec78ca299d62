"""A Python client for `realm serve` (or any OpenAI-compatible server): sync and async.

    from realm_web.client import Client
    c = Client("http://127.0.0.1:8080", api_key="sk-realm-...")
    print(c.chat([{"role": "user", "content": "Hi"}], max_tokens=32).text)
    for chunk in c.chat_stream([{"role": "user", "content": "Hi"}], max_tokens=32):
        print(chunk.text, end="", flush=True)

    from realm_web.client import AsyncClient
    async with AsyncClient(base_url, api_key=key) as c:
        async for chunk in await c.complete_stream("Once upon a time", max_tokens=32):
            ...

Errors are typed: `AuthenticationError` (401), `ModelNotFoundError` (404 for a
model), `RateLimitError` (429, `.retry_after` seconds), `BadRequestError`
(400/413/422), `ServerError` (5xx), `APIConnectionError`, `APITimeoutError`;
all are `RealmAPIError`. Requests that fail with 429, 5xx, a timeout or a
connection error are retried `max_retries` times with exponential backoff and
jitter, waiting what the server's `Retry-After` says when it says so. A stream
is retried only before its first byte.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator

import httpx

__all__ = ["Client", "AsyncClient", "Completion", "Chunk", "Usage", "Stream", "AsyncStream",
           "RealmAPIError", "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
           "ModelNotFoundError", "RateLimitError", "ServerError", "APIConnectionError", "APITimeoutError"]


# ---------------------------------------------------------------------- errors
class RealmAPIError(Exception):
    """Any failure of an API call. `status` is None for connection problems."""

    def __init__(self, message: str, status: int | None = None, body: dict | None = None,
                 request_id: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body or {}
        err = self.body.get("error") if isinstance(self.body.get("error"), dict) else {}
        self.type = err.get("type")
        self.param = err.get("param")
        self.code = err.get("code")
        self.request_id = request_id
        self.headers = headers or {}

    def __str__(self) -> str:
        bits = [f"{self.status}" if self.status else None, self.message,
                f"(param: {self.param})" if self.param else None]
        return " ".join(b for b in bits if b)


class BadRequestError(RealmAPIError):
    """400, 413, 422: the request is wrong (`param` names the field)."""


class AuthenticationError(RealmAPIError):
    """401: no API key, or one that is unknown, disabled or revoked."""


class PermissionDeniedError(RealmAPIError):
    """403."""


class NotFoundError(RealmAPIError):
    """404."""


class ModelNotFoundError(NotFoundError):
    """404 for a model the server does not serve."""


class RateLimitError(RealmAPIError):
    """429: over the tenant's requests/min or tokens/min; retry after `retry_after` seconds."""

    def __init__(self, *a, retry_after: float | None = None, **kw) -> None:
        super().__init__(*a, **kw)
        self.retry_after = retry_after


class ServerError(RealmAPIError):
    """5xx."""


class APIConnectionError(RealmAPIError):
    """The server could not be reached, or the connection broke."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


def _retry_after(headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    s = headers.get("retry-after")
    if s:
        try:
            return max(0.0, float(s))
        except ValueError:
            from email.utils import parsedate_to_datetime
            try:
                return max(0.0, parsedate_to_datetime(s).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def _error_from(status: int, body_bytes: bytes, headers) -> RealmAPIError:
    try:
        body = json.loads(body_bytes) if body_bytes else {}
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {}
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    msg = err.get("message") or (body_bytes[:200].decode("utf-8", "replace") if body_bytes else f"HTTP {status}")
    kw = dict(status=status, body=body, request_id=headers.get("x-request-id"), headers=dict(headers))
    if status == 401:
        return AuthenticationError(msg, **kw)
    if status == 403:
        return PermissionDeniedError(msg, **kw)
    if status == 404:
        return (ModelNotFoundError if err.get("code") == "model_not_found" or err.get("param") == "model"
                else NotFoundError)(msg, **kw)
    if status == 429:
        return RateLimitError(msg, retry_after=_retry_after(headers), **kw)
    if status in (400, 409, 413, 422):
        return BadRequestError(msg, **kw)
    if status >= 500:
        return ServerError(msg, **kw)
    return RealmAPIError(msg, **kw)


def _stream_error(obj: dict) -> RealmAPIError:
    err = obj.get("error") or {}
    status = 500 if err.get("type") == "server_error" else 400
    if err.get("code") == "unavailable":
        status = 503
    return _error_from(status, json.dumps(obj).encode(), {})


def _retryable(e: RealmAPIError) -> bool:
    return isinstance(e, (RateLimitError, APIConnectionError)) or (e.status is not None and e.status >= 500)


# ---------------------------------------------------------------------- results
@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, d: dict | None) -> "Usage | None":
        if not d:
            return None
        return cls(d.get("prompt_tokens", 0), d.get("completion_tokens", 0), d.get("total_tokens", 0))


@dataclass
class Completion:
    """A whole chat or text completion."""
    id: str
    model: str
    text: str
    finish_reason: str | None
    usage: Usage | None
    raw: dict = field(repr=False, default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> "Completion":
        ch = (d.get("choices") or [{}])[0]
        text = ch.get("message", {}).get("content") if "message" in ch else ch.get("text")
        return cls(d.get("id", ""), d.get("model", ""), text or "", ch.get("finish_reason"), Usage.of(d.get("usage")), d)


@dataclass
class Chunk:
    """One streamed piece: `text` is the new text (possibly empty)."""
    id: str
    text: str
    finish_reason: str | None
    usage: Usage | None
    raw: dict = field(repr=False, default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> "Chunk":
        chs = d.get("choices") or []
        ch = chs[0] if chs else {}
        text = (ch.get("delta") or {}).get("content") if "delta" in ch else ch.get("text")
        return cls(d.get("id", ""), text or "", ch.get("finish_reason"), Usage.of(d.get("usage")), d)


@dataclass
class Embeddings:
    model: str
    vectors: list[list[float]]
    usage: Usage | None
    raw: dict = field(repr=False, default_factory=dict)


def _sse_payloads(lines) -> Iterator[dict]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        obj = json.loads(data)
        if isinstance(obj, dict) and "error" in obj and "choices" not in obj:
            raise _stream_error(obj)
        yield obj


class _StreamState:
    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, c: Chunk) -> Chunk:
        if c.text:
            self.text_parts.append(c.text)
        if c.finish_reason:
            self.finish_reason = c.finish_reason
        if c.usage:
            self.usage = c.usage
        return c

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


class Stream(_StreamState):
    """Iterate for `Chunk`s; afterwards `.text`, `.finish_reason`, `.usage` (if requested).
    Closing it early (or leaving a `with` block) disconnects, which cancels the generation."""

    def __init__(self, resp: httpx.Response) -> None:
        super().__init__()
        self._resp = resp

    def __iter__(self) -> Iterator[Chunk]:
        try:
            for obj in _sse_payloads(self._resp.iter_lines()):
                yield self.feed(Chunk.of(obj))
        except httpx.TimeoutException as e:
            raise APITimeoutError(f"the stream timed out: {e}") from None
        except httpx.TransportError as e:
            raise APIConnectionError(f"the stream broke: {e}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._resp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncStream(_StreamState):
    def __init__(self, resp: httpx.Response) -> None:
        super().__init__()
        self._resp = resp

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        try:
            async for line in self._resp.aiter_lines():
                for obj in _sse_payloads([line]):
                    yield self.feed(Chunk.of(obj))
                if line.strip() == "data: [DONE]":
                    return
        except httpx.TimeoutException as e:
            raise APITimeoutError(f"the stream timed out: {e}") from None
        except httpx.TransportError as e:
            raise APIConnectionError(f"the stream broke: {e}") from None
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._resp.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


# ---------------------------------------------------------------------- clients
def _base(url: str | None) -> str:
    url = (url or os.environ.get("REALM_BASE_URL") or "http://127.0.0.1:8080").rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _body(model: str | None, extra: dict, **fields) -> dict:
    body = {k: v for k, v in fields.items() if v is not None}
    if model is not None:
        body["model"] = model
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


class _Base:
    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 2, backoff: float = 0.5, max_backoff: float = 30.0,
                 default_model: str | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = _base(base_url)
        self._transport = transport   # an httpx transport (tests: httpx.MockTransport)
        self.api_key = api_key if api_key is not None else os.environ.get("REALM_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.default_model = default_model
        self._headers = {"accept": "application/json"}
        if self.api_key:
            self._headers["authorization"] = f"Bearer {self.api_key}"

    def _delay(self, attempt: int, err: RealmAPIError) -> float:
        ra = getattr(err, "retry_after", None)
        if ra is None and err.headers:
            ra = _retry_after({k.lower(): v for k, v in err.headers.items()})
        if ra is not None:
            return min(ra, self.max_backoff * 4)
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base * (0.5 + random.random() / 2)

    @staticmethod
    def _transport_error(e: Exception) -> RealmAPIError:
        if isinstance(e, httpx.TimeoutException):
            return APITimeoutError(f"request timed out: {e}")
        return APIConnectionError(f"could not reach the server: {e}")


class Client(_Base):
    """Synchronous client. Thread-safe (one httpx.Client underneath)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, **kw) -> None:
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.Client(timeout=self.timeout, headers=self._headers, transport=self._transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False) -> httpx.Response:
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                req = self._http.build_request(method, url, json=body)
                resp = self._http.send(req, stream=stream)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                err = self._transport_error(e)
            else:
                if resp.status_code < 400:
                    return resp
                data = resp.read()
                resp.close()
                err = _error_from(resp.status_code, data, resp.headers)
            if attempt >= self.max_retries or not _retryable(err):
                raise err
            time.sleep(self._delay(attempt, err))
            attempt += 1

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        return self._send(method, path, body).json()

    def _model(self, model: str | None) -> str:
        if model:
            return model
        if not self.default_model:
            ids = self.models()
            if not ids:
                raise ModelNotFoundError("the server serves no models", status=404)
            self.default_model = ids[0]
        return self.default_model

    # ------------------------------------------------------------ endpoints
    def models(self) -> list[str]:
        return [m["id"] for m in self._json("GET", "/models").get("data", [])]

    def chat(self, messages: list[dict], model: str | None = None, **params) -> Completion:
        return Completion.of(self._json("POST", "/chat/completions",
                                        _body(self._model(model), params, messages=messages)))

    def chat_stream(self, messages: list[dict], model: str | None = None, include_usage: bool = True,
                    **params) -> Stream:
        body = _body(self._model(model), params, messages=messages, stream=True,
                     stream_options={"include_usage": True} if include_usage else None)
        return Stream(self._send("POST", "/chat/completions", body, stream=True))

    def complete(self, prompt: str | list[int], model: str | None = None, **params) -> Completion:
        return Completion.of(self._json("POST", "/completions", _body(self._model(model), params, prompt=prompt)))

    def complete_stream(self, prompt: str | list[int], model: str | None = None, include_usage: bool = True,
                        **params) -> Stream:
        body = _body(self._model(model), params, prompt=prompt, stream=True,
                     stream_options={"include_usage": True} if include_usage else None)
        return Stream(self._send("POST", "/completions", body, stream=True))

    def embed(self, input: str | list[str], model: str | None = None) -> Embeddings:
        d = self._json("POST", "/embeddings", _body(self._model(model), {}, input=input))
        vecs = [e["embedding"] for e in sorted(d["data"], key=lambda e: e["index"])]
        return Embeddings(d.get("model", ""), vecs, Usage.of(d.get("usage")), d)

    def health(self) -> bool:
        try:
            return self._http.get(self.base_url[:-3] + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def ready(self) -> bool:
        try:
            return self._http.get(self.base_url[:-3] + "/ready").status_code == 200
        except httpx.HTTPError:
            return False


class AsyncClient(_Base):
    """asyncio client; the same methods as `Client`, awaited."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, **kw) -> None:
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.AsyncClient(timeout=self.timeout, headers=self._headers, transport=self._transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    async def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False) -> httpx.Response:
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                req = self._http.build_request(method, url, json=body)
                resp = await self._http.send(req, stream=stream)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                err = self._transport_error(e)
            else:
                if resp.status_code < 400:
                    return resp
                data = await resp.aread()
                await resp.aclose()
                err = _error_from(resp.status_code, data, resp.headers)
            if attempt >= self.max_retries or not _retryable(err):
                raise err
            await asyncio.sleep(self._delay(attempt, err))
            attempt += 1

    async def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        return (await self._send(method, path, body)).json()

    async def _model(self, model: str | None) -> str:
        if model:
            return model
        if not self.default_model:
            ids = await self.models()
            if not ids:
                raise ModelNotFoundError("the server serves no models", status=404)
            self.default_model = ids[0]
        return self.default_model

    async def models(self) -> list[str]:
        return [m["id"] for m in (await self._json("GET", "/models")).get("data", [])]

    async def chat(self, messages: list[dict], model: str | None = None, **params) -> Completion:
        return Completion.of(await self._json("POST", "/chat/completions",
                                              _body(await self._model(model), params, messages=messages)))

    async def chat_stream(self, messages: list[dict], model: str | None = None, include_usage: bool = True,
                          **params) -> AsyncStream:
        body = _body(await self._model(model), params, messages=messages, stream=True,
                     stream_options={"include_usage": True} if include_usage else None)
        return AsyncStream(await self._send("POST", "/chat/completions", body, stream=True))

    async def complete(self, prompt: str | list[int], model: str | None = None, **params) -> Completion:
        return Completion.of(await self._json("POST", "/completions",
                                              _body(await self._model(model), params, prompt=prompt)))

    async def complete_stream(self, prompt: str | list[int], model: str | None = None, include_usage: bool = True,
                              **params) -> AsyncStream:
        body = _body(await self._model(model), params, prompt=prompt, stream=True,
                     stream_options={"include_usage": True} if include_usage else None)
        return AsyncStream(await self._send("POST", "/completions", body, stream=True))

    async def embed(self, input: str | list[str], model: str | None = None) -> Embeddings:
        d = await self._json("POST", "/embeddings", _body(await self._model(model), {}, input=input))
        vecs = [e["embedding"] for e in sorted(d["data"], key=lambda e: e["index"])]
        return Embeddings(d.get("model", ""), vecs, Usage.of(d.get("usage")), d)

    async def health(self) -> bool:
        try:
            return (await self._http.get(self.base_url[:-3] + "/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def ready(self) -> bool:
        try:
            return (await self._http.get(self.base_url[:-3] + "/ready")).status_code == 200
        except httpx.HTTPError:
            return False
