"""Tool calls (OpenAI's `tools` + `tool_choice`) on any model, in llama.cpp's "generic" format
(common/chat.cpp): the model answers with one JSON object, either {"tool_calls": [{"name",
"arguments"}, ...]} or {"response": "..."}, constrained by a JSON Schema built from the tools'
parameter schemas (converted to a grammar by the core), so every call names a tool and its
arguments validate. `tool_choice` picks the alternatives: "auto" both, "required" calls only,
a named function that one only, "none" no tools at all.

Messages round-trip through the model's own chat template: a template that renders tools and
`tool_calls` itself (it mentions them) gets them as fields; for one that does not, the tools are
described in a system message and an assistant's calls are written into its content in the
same JSON the model produces, as llama.cpp's polyfills do.

A template that writes Hermes-style `<tool_call>` tags (Qwen2.5, Hermes 2/3; llama.cpp's
common/chat.cpp "Hermes 2 Pro" handler) gets that format instead: the model writes
`<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` blocks, one grammar rule per
call (the same schema), and with "auto" free text as the grammar's other alternative.

A Llama 3.1+ tool template (it renders an `ipython` role; llama.cpp's "Llama 3.x" handler) gets
that model's format: the template lists the tools itself, and the model answers one bare JSON
call `{"name": ..., "parameters": {...}}` (optionally after `<|python_tag|>`); Llama 3.x writes
one call per turn, so parallel calls are not offered. Built-in tools (brave_search, ...) are not."""
from __future__ import annotations

import json
import re
import uuid

from .grammars import FormatError

INSTRUCTION = ("Respond in JSON format, either with `tool_calls` (a request to call tools) or with `response` "
               "(a reply to the user's request).")
REQUIRED_INSTRUCTION = "Respond in JSON format with `tool_calls` (a request to call tools)."


def parse_tools(tools, tool_choice) -> tuple[list[dict], str | None]:
    """Check OpenAI's tools and tool_choice: ([{"name", "description", "parameters"}], choice) where
    choice is "auto", "required", a tool's name, or None (no tools: absent, empty or "none").
    Raises FormatError naming the field."""
    if tools is None or tools == []:
        if tool_choice not in (None, "none", "auto"):
            raise FormatError("Invalid 'tool_choice': it needs 'tools'.", "tool_choice")
        return [], None
    if not isinstance(tools, list):
        raise FormatError("Invalid 'tools': expected an array of tools.", "tools")
    if len(tools) > 128:
        raise FormatError(f"Invalid 'tools': at most 128 tools, got {len(tools)}.", "tools")
    out, names = [], set()
    for i, t in enumerate(tools):
        key = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise FormatError(f"Invalid '{key}': expected {{\"type\": \"function\", \"function\": {{...}}}}.", key)
        f = t["function"]
        name = f.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or \
                not all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
            raise FormatError(f"Invalid '{key}.function.name': 1-64 letters, digits, '_' or '-'.", f"{key}.function.name")
        if name in names:
            raise FormatError(f"Invalid '{key}.function.name': {name!r} is given twice.", f"{key}.function.name")
        names.add(name)
        params = f.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise FormatError(f"Invalid '{key}.function.parameters': expected a JSON Schema object.",
                              f"{key}.function.parameters")
        desc = f.get("description")
        if desc is not None and not isinstance(desc, str):
            raise FormatError(f"Invalid '{key}.function.description': expected a string.", f"{key}.function.description")
        out.append({"name": name, "description": desc or "", "parameters": params})
    if tool_choice in (None, "auto"):
        return out, "auto"
    if tool_choice == "none":
        return out, None
    if tool_choice == "required":
        return out, "required"
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function" and \
            isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        if name not in names:
            raise FormatError(f"Invalid 'tool_choice.function.name': no tool is named {name!r}.",
                              "tool_choice.function.name")
        return out, name
    raise FormatError("Invalid 'tool_choice': expected 'none', 'auto', 'required' or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice")


def parameters_param(tools: list[dict], name: str) -> str:
    return f"tools[{[t['name'] for t in tools].index(name)}].function.parameters"


def envelope_schema(tools: list[dict], choice: str, response_schema=None, parallel: bool = True) -> dict:
    """The JSON Schema of the model's answer (llama.cpp's generic format); the tools' parameter
    schemas keep their own $defs by being inlined under each call's "arguments"."""
    chosen = [t for t in tools if choice in ("auto", "required") or t["name"] == choice]
    calls = [{"type": "object", "properties": {"name": {"const": t["name"]}, "arguments": t["parameters"]},
              "required": ["name", "arguments"], "additionalProperties": False} for t in chosen]
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    items = {"type": "array", "items": call, "minItems": 1}
    if choice not in ("auto", "required") or not parallel:   # (OpenAI's parallel_tool_calls: false)
        items["maxItems"] = 1
    with_calls = {"type": "object", "properties": {"tool_calls": items}, "required": ["tool_calls"],
                  "additionalProperties": False}
    if choice != "auto":
        return with_calls
    reply = {"type": "object", "properties": {"response": response_schema or {"type": "string"}},
             "required": ["response"], "additionalProperties": False}
    return {"anyOf": [with_calls, reply]}


LLAMA3_MARK = "<|start_header_id|>ipython<|end_header_id|>"   # how llama.cpp's chat.cpp spots a Llama 3.x tool template
PYTHON_TAG = "<|python_tag|>"


def tool_format(template: str | None) -> str:
    """"hermes" for templates that write <tool_call> tags, "llama3" for Llama 3.1+ tool
    templates (an ipython role), else "generic"."""
    if template and "<tool_call>" in template:
        return "hermes"
    if template and LLAMA3_MARK in template:
        return "llama3"
    return "generic"


def format_grammar(model, fmt: str, tools: list[dict], choice: str, response_schema=None, parallel: bool = True) -> str:
    """GBNF of an answer in format fmt (FormatError naming "tools" on a bad combination)."""
    from .grammars import schema_grammar
    if fmt == "hermes":
        return hermes_grammar(model, tools, choice, response_schema, parallel)
    if fmt == "llama3":
        return llama3_grammar(model, tools, choice, response_schema)
    return schema_grammar(model, envelope_schema(tools, choice, response_schema, parallel), "tools")


def llama3_grammar(model, tools: list[dict], choice: str, response_schema=None) -> str:
    """GBNF of a Llama 3.x answer: one bare JSON call {"name", "parameters"} (the tools'
    schemas, converted by the core with the rule prefix "call-"), or with "auto" plain text
    that does not open with "{" (or, given a response_format, a reply of that schema)."""
    from .grammars import schema_grammar
    chosen = [t for t in tools if choice in ("auto", "required") or t["name"] == choice]
    calls = [{"type": "object", "properties": {"name": {"const": t["name"]}, "parameters": t["parameters"]},
              "required": ["name", "parameters"], "additionalProperties": False} for t in chosen]
    rules = schema_grammar(model, calls[0] if len(calls) == 1 else {"anyOf": calls}, "tools", prefix="call-")
    if choice != "auto":
        return f"root ::= call-root\n{rules}"
    if response_schema is None:
        text = 'text ::= [^{\\x00] [^\\x00]*\n'
    else:
        text = "text ::= reply-root\n" + schema_grammar(model, response_schema, "response_format", prefix="reply-")
    return f"root ::= call-root | text\n{text}{rules}"


def hermes_grammar(model, tools: list[dict], choice: str, response_schema=None, parallel: bool = True) -> str:
    """GBNF of a Hermes-format answer: <tool_call> blocks (each call's JSON from the tools'
    schemas, converted by the core with the rule prefix "call-"), or with "auto" plain text
    that does not open with a tag (or, given a response_format, a reply of that schema)."""
    from .grammars import schema_grammar
    one = envelope_schema(tools, choice if choice != "auto" else "required")["properties"]["tool_calls"]["items"]
    rules = schema_grammar(model, one, "tools", prefix="call-")
    block = '"<tool_call>\\n" call-root "</tool_call>"'
    calls = block if choice not in ("auto", "required") or not parallel else f'{block} ("\\n" {block})*'
    if choice != "auto":
        return f"root ::= {calls}\n{rules}"
    if response_schema is None:
        text = 'text ::= [^<\\x00] [^\\x00]*\n'
    else:
        text = "text ::= reply-root\n" + schema_grammar(model, response_schema, "response_format", prefix="reply-")
    return f"root ::= {calls} | text\n{text}{rules}"


def check_schemas(tools: list[dict], convert) -> None:
    """Convert each tool's parameters alone first, so a bad one is named by its own field."""
    for i, t in enumerate(tools):
        convert(t["parameters"], f"tools[{i}].function.parameters")


def _renders(template: str | None, word: str) -> bool:
    return bool(template) and word in template


def prompt_messages(messages: list[dict], tools: list[dict], choice: str | None, template: str | None) -> tuple[list[dict], dict]:
    """The messages (and extra template arguments) to render for a chat with tools."""
    out = []
    native_calls = _renders(template, "tool_calls")
    for m in messages:
        m = dict(m)
        calls = m.get("tool_calls")
        if calls and not native_calls:   # the model's own answer format, as its content
            m["content"] = json.dumps({"tool_calls": [
                {"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
                for c in calls]}, ensure_ascii=False)
            m.pop("tool_calls")
        elif calls:
            m["tool_calls"] = [dict(c, function=dict(c["function"], arguments=_arguments(c["function"].get("arguments"))))
                               for c in calls]
        out.append(m)
    extra = {}
    if choice is None:
        return out, extra
    if tool_format(template) in ("hermes", "llama3"):   # the template describes the tools and the format itself
        extra["tools"] = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                            "parameters": t["parameters"]}} for t in tools]
        return out, extra
    if _renders(template, "tools"):
        extra["tools"] = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                                            "parameters": t["parameters"]}} for t in tools]
        described = ""
    else:
        described = "You can call these tools:\n" + "\n".join(
            json.dumps({"name": t["name"], "description": t["description"], "parameters": t["parameters"]},
                       ensure_ascii=False) for t in tools) + "\n\n"
    note = described + (INSTRUCTION if choice == "auto" else REQUIRED_INSTRUCTION)
    if out and out[0].get("role") == "system":
        out[0] = dict(out[0], content=(out[0].get("content") or "") + "\n\n" + note)
    else:
        out.insert(0, {"role": "system", "content": note})
    return out, extra


def _arguments(a):
    """An assistant message's arguments (OpenAI sends a JSON string) as a value."""
    if isinstance(a, str):
        try:
            return json.loads(a)
        except ValueError:
            return a
    return a if a is not None else {}


_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def _call(name, arguments) -> dict:
    return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def parse_answer(text: str, fmt: str = "generic") -> tuple[str | None, list[dict] | None]:
    """(content, tool_calls) from the model's answer in format fmt; a text that is not one (cut
    short by max_tokens) is returned as content."""
    if fmt == "llama3":
        body = text.strip()
        body = body[len(PYTHON_TAG):].lstrip() if body.startswith(PYTHON_TAG) else body
        try:
            v = json.loads(body)
        except ValueError:
            return text, None
        if isinstance(v, dict) and isinstance(v.get("name"), str) and "parameters" in v and \
                set(v) <= {"type", "name", "parameters"}:
            return None, [_call(v["name"], v["parameters"])]
        return text, None
    if fmt == "hermes":
        calls = []
        for body in _HERMES_CALL.findall(text):
            try:
                v = json.loads(body)
                calls.append(_call(v["name"], v["arguments"]))
            except (ValueError, KeyError, TypeError):
                return text, None
        rest = _HERMES_CALL.sub("", text).strip()
        return (rest or None) if calls else text, calls or None
    try:
        v = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(v, dict) and isinstance(v.get("tool_calls"), list):
        return None, [_call(c["name"], c["arguments"]) for c in v["tool_calls"]]
    if isinstance(v, dict) and "response" in v:
        r = v["response"]
        return (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)), None
    return text, None
