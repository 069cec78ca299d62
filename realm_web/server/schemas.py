"""Request validation: OpenAI request bodies in, plain dataclasses out.

Every rejection is an `APIError` (400) whose message and `param` name the
field, in OpenAI's wording where there is one ("Invalid type for
'max_tokens': expected an integer, but got a string instead."). Unknown
fields are ignored, as OpenAI-compatible servers usually do; fields that ask
for something this server cannot do (tools, response_format json, echo, ...)
are refused rather than silently dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import chat as chat_mod
from ..errors import RealmError
from ..grammars import JSON, FormatError, response_format_schema
from ..sampling import GenerationOptions, SamplerSettings, from_openai
from .errors import APIError, bad_request
from .tool_calls import apply_tools, tool_message_fields

MAX_TOKENS_CEILING = 1 << 20   # anything above is "huge" whatever the model
MAX_STOP = 4
MAX_EMBED_INPUTS = 256
MAX_CHOICES = 16               # n per request (OpenAI allows 128; each choice holds a session)
MAX_COMPLETION_LOGPROBS = 5    # /v1/completions' logprobs, as OpenAI
ROLES = ("system", "developer", "user", "assistant", "tool", "function")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "an object", type(None): "null"}


def _tname(v: Any) -> str:
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def _bad_type(key: str, want: str, v: Any) -> APIError:
    return bad_request(f"Invalid type for '{key}': expected {want}, but got {_tname(v)} instead.", param=key)


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw.strip():
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8.") from None
    except json.JSONDecodeError as e:
        raise bad_request(f"The request body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno}).") from None
    if not isinstance(body, dict):
        raise bad_request(f"The request body must be a JSON object, not {_tname(body)}.")
    return body


class _Fields:
    """Typed getters over a request body; None (or absent) means "use the default"."""

    def __init__(self, body: dict) -> None:
        self.b = body

    def has(self, key: str) -> bool:
        return self.b.get(key) is not None

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        v = self.b.get(key)
        if v is None:
            if required:
                raise bad_request(f"Missing required parameter: '{key}'.", param=key)
            return default
        if not isinstance(v, str):
            raise _bad_type(key, "a string", v)
        return v

    def bool(self, key: str, default: bool = False) -> bool:
        v = self.b.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise _bad_type(key, "a boolean", v)
        return v

    def int(self, key: str, default: int | None = None, lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.b.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise _bad_type(key, "an integer", v)
        if lo is not None and v < lo:
            raise bad_request(f"Invalid '{key}': {v} is less than the minimum of {lo}.", param=key)
        if hi is not None and v > hi:
            raise bad_request(f"Invalid '{key}': {v} is greater than the maximum of {hi}.", param=key)
        return v

    def num(self, key: str, default: float | None, lo: float | None = None, hi: float | None = None) -> float | None:
        v = self.b.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad_type(key, "a number", v)
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            raise bad_request(f"Invalid '{key}': must be a finite number.", param=key)
        if lo is not None and v < lo:
            raise bad_request(f"Invalid '{key}': {v:g} is less than the minimum of {lo:g}.", param=key)
        if hi is not None and v > hi:
            raise bad_request(f"Invalid '{key}': {v:g} is greater than the maximum of {hi:g}.", param=key)
        return v


@dataclass
class Sampling:
    """A request's sampler settings and generation options (realm_web.sampling.from_openai)."""
    settings: SamplerSettings
    options: GenerationOptions
    max_tokens_param: str = "max_tokens"
    n: int = 1                      # independent choices
    logprobs: int | None = None     # None: off; else the top this many besides the sampled token's
    grammar: str | None = None      # GBNF every sampled token must follow (`grammar`, response_format)
    grammar_param: str = "grammar"  # the field it came from, for errors
    json_schema: Any = None         # a JSON Schema the grammar comes from (response_format json_schema, tools)
    schema_checks: list = field(default_factory=list)   # (schema, param): converted first, so a bad one is named
    grammar_builder: Any = None     # model -> GBNF, run on the scheduler thread (tool-call formats)
    lora: list[tuple[str, float]] | None = None   # [(adapter id, scale)]; None: the tenant's default

    @property
    def max_tokens(self) -> int | None:   # None: until end of generation or a full context
        return self.options.max_tokens


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    sampling: Sampling
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    kind: str = "chat.completion"
    tools: list = field(default_factory=list)   # realm_web.tools.parse_tools's
    tool_choice: str | None = None              # None: no tool calls; else "auto", "required" or a tool's name
    tool_response: Any = None                   # the reply's schema with "auto" (from response_format)
    tool_format: str = "generic"                # realm_web.tools.tool_format of the model's template
    parallel_tool_calls: bool = True            # False: at most one call
    template_kwargs: dict = field(default_factory=dict)   # chat_template_kwargs (llama-server's), e.g. enable_thinking


@dataclass
class CompletionRequest:
    model: str
    prompt: str | list[int]
    sampling: Sampling
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    kind: str = "text_completion"


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None
    kind: str = "embedding"


def _sampling(f: _Fields, default_max: int | None, max_key: str = "max_tokens") -> Sampling:
    """Check the sampling fields' types and ranges, then map them with sampling.from_openai
    (which holds the defaults: OpenAI's)."""
    key = max_key if f.has(max_key) else "max_tokens"
    f.int(key, None, lo=1, hi=MAX_TOKENS_CEILING)
    f.num("temperature", None, 0.0, 2.0)
    f.num("top_p", None, 0.0, 1.0)
    f.num("frequency_penalty", None, -2.0, 2.0)
    f.num("presence_penalty", None, -2.0, 2.0)
    # llama.cpp server's extensions, accepted here too
    f.int("top_k", None, lo=0, hi=1 << 20)
    f.num("min_p", None, 0.0, 1.0)
    f.num("repeat_penalty", None, 0.0, 10.0)
    f.int("repeat_last_n", None, lo=-1, hi=1 << 20)
    f.int("seed", None, lo=-(1 << 63), hi=(1 << 64) - 1)
    stop = f.b.get("stop")
    if isinstance(stop, list):
        if len(stop) > MAX_STOP:
            raise bad_request(f"Invalid 'stop': at most {MAX_STOP} sequences, got {len(stop)}.", param="stop")
        for i, x in enumerate(stop):
            if not isinstance(x, str):
                raise _bad_type(f"stop[{i}]", "a string", x)
    elif stop is not None and not isinstance(stop, str):
        raise _bad_type("stop", "a string or an array of strings", stop)
    n = f.int("n", 1, lo=1, hi=MAX_CHOICES)
    grammar = f.str("grammar")      # llama-server's field: GBNF text
    bias = f.b.get("logit_bias")
    if bias not in (None, {}):
        raise bad_request("'logit_bias' is not supported by this server.", param="logit_bias")
    settings, options = from_openai(f.b, max_key, default_max)
    return Sampling(settings, options, key, n=n, grammar=grammar or None, lora=parse_lora(f.b.get("lora")))


MAX_LORA = 8   # adapters per request (the core's per-session limit)


def parse_lora(v: Any, param: str = "lora") -> list[tuple[str, float]] | None:
    """llama-server's per-request `lora`: [{"id": ..., "scale": ...}, ...] (scale default 1);
    [] means none (not even the tenant's default)."""
    if v is None:
        return None
    if not isinstance(v, list):
        raise _bad_type(param, 'an array of {"id": ..., "scale": ...} objects', v)
    if len(v) > MAX_LORA:
        raise bad_request(f"Invalid '{param}': at most {MAX_LORA} adapters, got {len(v)}.", param=param)
    out: list[tuple[str, float]] = []
    for i, x in enumerate(v):
        if not isinstance(x, dict) or not isinstance(x.get("id"), (str, int)) or isinstance(x.get("id"), bool):
            raise _bad_type(f"{param}[{i}]", 'an object with an "id" (string or integer)', x)
        sc = x.get("scale", 1.0)
        if isinstance(sc, bool) or not isinstance(sc, (int, float)) or sc != sc or sc in (float("inf"), float("-inf")):
            raise bad_request(f"Invalid '{param}[{i}].scale': must be a finite number.", param=param)
        aid = str(x["id"])
        if any(a == aid for a, _ in out):
            raise bad_request(f"Invalid '{param}': adapter '{aid}' is named twice.", param=param)
        out.append((aid, float(sc)))
    return out


def _stream_opts(f: _Fields) -> tuple[bool, bool]:
    stream = f.bool("stream", False)
    so = f.b.get("stream_options")
    include = False
    if so is not None:
        if not isinstance(so, dict):
            raise _bad_type("stream_options", "an object", so)
        v = so.get("include_usage")
        if v is not None and not isinstance(v, bool):
            raise _bad_type("stream_options.include_usage", "a boolean", v)
        include = bool(v)
    return stream, include


def _message_text(i: int, content: Any) -> str:
    key = f"messages[{i}].content"
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict):
                raise _bad_type(f"{key}[{j}]", "an object", p)
            if p.get("type") != "text":
                raise bad_request(f"Invalid '{key}[{j}].type': only 'text' parts are supported, got {p.get('type')!r}.",
                                  param=f"{key}[{j}].type")
            t = p.get("text")
            if not isinstance(t, str):
                raise _bad_type(f"{key}[{j}].text", "a string", t)
            parts.append(t)
        return "".join(parts)
    raise _bad_type(key, "a string or an array of content parts", content)


def _response_format(body: dict) -> tuple[str, Any]:
    try:
        return response_format_schema(body.get("response_format"))
    except FormatError as e:
        raise bad_request(str(e), param=e.param) from None


def _apply_response_format(sampling: "Sampling", rf: tuple[str, Any]) -> tuple[str, Any]:
    """response_format (chat and completions) -> the sampling's grammar or JSON Schema."""
    rf_kind, rf_schema = rf
    if rf_kind != "text":
        if sampling.grammar:
            raise bad_request(f"Give either 'grammar' or 'response_format' {rf_kind}, not both.", param="grammar")
        if rf_kind == "json_object":
            sampling.grammar, sampling.grammar_param = JSON, "response_format"
        else:   # converted on the scheduler thread, where the model's core is (a bad schema is a 400 there)
            sampling.json_schema, sampling.grammar_param = rf_schema, "response_format.json_schema.schema"
    return rf_kind, rf_schema


def parse_chat(body: dict) -> ChatRequest:
    f = _Fields(body)
    model = f.str("model", required=True)
    msgs = body.get("messages")
    if msgs is None:
        raise bad_request("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(msgs, list):
        raise _bad_type("messages", "an array", msgs)
    if not msgs:
        raise bad_request("Invalid 'messages': empty array. Expected an array with minimum length 1.", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _bad_type(f"messages[{i}]", "an object", m)
        role = m.get("role")
        if not isinstance(role, str):
            raise bad_request(f"Missing required parameter: 'messages[{i}].role'.", param=f"messages[{i}].role") \
                if role is None else _bad_type(f"messages[{i}].role", "a string", role)
        if role not in ROLES:
            raise bad_request(f"Invalid value for 'messages[{i}].role': {role!r}. Supported values are: "
                              + ", ".join(repr(r) for r in ROLES) + ".", param=f"messages[{i}].role")
        msg = {"role": "system" if role == "developer" else role, "content": _message_text(i, m.get("content"))}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        msg.update(tool_message_fields(i, m))
        out.append(msg)
    if body.get("functions"):
        raise bad_request("'functions' (deprecated) is not supported by this server; use 'tools'.", param="functions")
    want_lp = f.bool("logprobs", False)
    top = f.int("top_logprobs", None, lo=0, hi=20)
    if top is not None and not want_lp:
        raise bad_request("Invalid 'top_logprobs': it needs 'logprobs' set to true.", param="top_logprobs")
    rf = _response_format(body)
    stream, include = _stream_opts(f)
    sampling = _sampling(f, None, "max_completion_tokens")
    sampling.logprobs = (top or 0) if want_lp else None
    rf_kind, rf_schema = _apply_response_format(sampling, rf)
    try:
        kwargs = chat_mod.template_kwargs(body.get("chat_template_kwargs"))
    except RealmError as e:
        raise bad_request(f"Invalid 'chat_template_kwargs': {e}", param="chat_template_kwargs") from None
    req = ChatRequest(model=model, messages=out, sampling=sampling,
                      stream=stream, include_usage=include, user=f.str("user"), template_kwargs=kwargs)
    apply_tools(req, body, rf_kind, rf_schema)
    return req


def _token_list(key: str, v: list) -> list[int]:
    for j, t in enumerate(v):
        if isinstance(t, bool) or not isinstance(t, int):
            raise _bad_type(f"{key}[{j}]", "an integer token id", t)
        if t < 0:
            raise bad_request(f"Invalid '{key}[{j}]': token id {t} is negative.", param=key)
    return list(v)


def parse_completion(body: dict) -> CompletionRequest:
    f = _Fields(body)
    model = f.str("model", required=True)
    p = body.get("prompt")
    if p is None:
        raise bad_request("Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]                       # a batch of one
    if isinstance(p, str):
        prompt: str | list[int] = p
    elif isinstance(p, list) and p and all(isinstance(x, str) for x in p):
        raise bad_request(f"Invalid 'prompt': batches of several prompts are not supported (got {len(p)}); "
                          "send one prompt per request.", param="prompt")
    elif isinstance(p, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in p):
        prompt = _token_list("prompt", p)
    else:
        raise _bad_type("prompt", "a string, an array of strings or an array of token ids", p)
    if isinstance(prompt, (str, list)) and len(prompt) == 0:
        raise bad_request("Invalid 'prompt': the prompt is empty.", param="prompt")
    if body.get("echo"):
        raise bad_request("'echo' is not supported by this server.", param="echo")
    if body.get("suffix"):
        raise bad_request("'suffix' (insertion) is not supported by this server.", param="suffix")
    lp = f.int("logprobs", None, lo=0, hi=MAX_COMPLETION_LOGPROBS)
    rf = _response_format(body)   # (llama-server's /v1/completions takes it too)
    # OpenAI's default for /v1/completions is 16 tokens
    sampling = _sampling(f, 16)
    _apply_response_format(sampling, rf)
    best_of = f.int("best_of", None, lo=1, hi=MAX_CHOICES)
    if best_of not in (None, sampling.n):
        raise bad_request(f"Invalid 'best_of': only best_of = n ({sampling.n}) is supported (every choice is "
                          f"returned), got {best_of}.", param="best_of")
    sampling.logprobs = lp
    stream, include = _stream_opts(f)
    return CompletionRequest(model=model, prompt=prompt, sampling=sampling, stream=stream,
                             include_usage=include, user=f.str("user"))


def parse_embedding(body: dict) -> EmbeddingRequest:
    f = _Fields(body)
    model = f.str("model", required=True)
    v = body.get("input")
    if v is None:
        raise bad_request("Missing required parameter: 'input'.", param="input")
    if isinstance(v, str):
        inputs: list = [v]
    elif isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        inputs = [_token_list("input", v)]
    elif isinstance(v, list) and v:
        inputs = []
        for i, x in enumerate(v):
            if isinstance(x, str):
                inputs.append(x)
            elif isinstance(x, list):
                inputs.append(_token_list(f"input[{i}]", x))
            else:
                raise _bad_type(f"input[{i}]", "a string or an array of token ids", x)
    elif isinstance(v, list):
        raise bad_request("Invalid 'input': empty array.", param="input")
    else:
        raise _bad_type("input", "a string or an array", v)
    if len(inputs) > MAX_EMBED_INPUTS:
        raise bad_request(f"Invalid 'input': at most {MAX_EMBED_INPUTS} inputs per request, got {len(inputs)}.",
                          param="input")
    for i, x in enumerate(inputs):
        if len(x) == 0:
            raise bad_request(f"Invalid 'input[{i}]': empty input." if len(inputs) > 1 else "Invalid 'input': empty input.",
                              param="input")
    fmt = f.str("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad_request(f"Invalid 'encoding_format': {fmt!r}; expected 'float' or 'base64'.", param="encoding_format")
    return EmbeddingRequest(model=model, inputs=inputs, encoding_format=fmt,
                            dimensions=f.int("dimensions", None, lo=1), user=f.str("user"))


PARSERS = {"chat.completions": parse_chat, "completions": parse_completion, "embeddings": parse_embedding}
