"""Grammars the hosts ship (GBNF, llama.cpp's syntax, run by the core: core/grammar.c),
from core/abi.json's "grammars" (the JS SDK reads the same ones from js-sdk/src/abi.js).

JSON: any JSON object (what OpenAI's `response_format: {"type": "json_object"}` asks for),
the language of llama.cpp's grammars/json.gbnf: a value is an object, array, string, number
or literal; whitespace only where JSON allows it, and bounded (a newline and at most 20
spaces or tabs at a time), so a constrained model cannot pad forever.

JSON Schema (`response_format: {"type": "json_schema", ...}`, tool parameters): converted to
GBNF by the core (realm_json_schema_gbnf, core/json_schema.c), so every host has the same.
"""
from __future__ import annotations

import re

from .abi import GRAMMARS
from .errors import RealmError

JSON = GRAMMARS["json"]


class FormatError(RealmError):
    """A bad response_format / tools field; .param names it (the server's 400 param)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def response_format_schema(rf) -> tuple[str, object]:
    """Check an OpenAI response_format: ("text", None), ("json_object", None) or
    ("json_schema", the schema). Raises FormatError naming the field."""
    if rf is None:
        return "text", None
    if not isinstance(rf, dict):
        raise FormatError("Invalid 'response_format': expected an object.", "response_format")
    t = rf.get("type")
    if t in (None, "text", "json_object"):
        return t or "text", None
    if t != "json_schema":
        raise FormatError(f"Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema', "
                          f"got {t!r}.", "response_format.type")
    js = rf.get("json_schema")
    if not isinstance(js, dict):
        raise FormatError("Invalid 'response_format.json_schema': expected an object with 'name' and 'schema'.",
                          "response_format.json_schema")
    name = js.get("name")
    if name is not None and not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name)):
        raise FormatError("Invalid 'response_format.json_schema.name': 1-64 letters, digits, '_' or '-'.",
                          "response_format.json_schema.name")
    if "strict" in js and js["strict"] is not None and not isinstance(js["strict"], bool):
        raise FormatError("Invalid 'response_format.json_schema.strict': expected a boolean.",
                          "response_format.json_schema.strict")
    schema = js.get("schema", {"type": "object"})   # OpenAI: no schema means any JSON object
    if not isinstance(schema, (dict, bool)):
        raise FormatError("Invalid 'response_format.json_schema.schema': expected a JSON Schema object.",
                          "response_format.json_schema.schema")
    return "json_schema", schema


def schema_grammar(model, schema, param: str = "response_format.json_schema.schema", prefix: str = "") -> str:
    """GBNF for a JSON Schema (the core converts it: CoreModel.json_schema_gbnf); FormatError on a bad one."""
    try:
        return model.json_schema_gbnf(schema, prefix)
    except RealmError as e:
        raise FormatError(f"Invalid '{param}': {e}", param) from None


def response_format_grammar(model, rf) -> str | None:
    """The GBNF an OpenAI response_format asks for (None: plain text)."""
    kind, schema = response_format_schema(rf)
    if kind == "json_object":
        return JSON
    return schema_grammar(model, schema) if kind == "json_schema" else None
