"""The server's side of tool calls (realm_web/tools.py holds the format): the request fields
(tools, tool_choice, messages' tool_calls / tool_call_id) and the answer as OpenAI returns it
(message.tool_calls, streamed delta.tool_calls, finish_reason "tool_calls")."""
from __future__ import annotations

from functools import partial
from typing import Any

from .. import tools as tools_mod
from ..errors import RealmError
from ..grammars import FormatError
from .errors import bad_request


def tool_message_fields(i: int, m: dict) -> dict:
    """An assistant message's tool_calls and a tool message's tool_call_id, checked."""
    out: dict[str, Any] = {}
    calls = m.get("tool_calls")
    if calls is not None:
        key = f"messages[{i}].tool_calls"
        if m.get("role") != "assistant" or not isinstance(calls, list):
            raise bad_request(f"Invalid '{key}': only an assistant message has tool_calls (an array).", param=key)
        for j, c in enumerate(calls):
            f = c.get("function") if isinstance(c, dict) else None
            if not isinstance(f, dict) or not isinstance(f.get("name"), str) or \
                    not isinstance(f.get("arguments", ""), (str, dict)):
                raise bad_request(f"Invalid '{key}[{j}]': expected {{\"id\", \"type\": \"function\", \"function\": "
                                  f"{{\"name\", \"arguments\"}}}}.", param=f"{key}[{j}]")
        out["tool_calls"] = calls
    tid = m.get("tool_call_id")
    if tid is not None:
        if not isinstance(tid, str):
            raise bad_request(f"Invalid 'messages[{i}].tool_call_id': expected a string.", param=f"messages[{i}].tool_call_id")
        out["tool_call_id"] = tid
    return out


def apply_tools(req, body: dict, rf_kind: str, rf_schema) -> None:
    """tools + tool_choice -> the request's tool settings and the grammar's JSON Schema."""
    try:
        tools, choice = tools_mod.parse_tools(body.get("tools"), body.get("tool_choice"))
    except FormatError as e:
        raise bad_request(str(e), param=e.param) from None
    req.tools, req.tool_choice = tools, choice
    if choice is None:
        return
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise bad_request("Invalid type for 'parallel_tool_calls': expected a boolean.", param="parallel_tool_calls")
    req.parallel_tool_calls = parallel
    sp = req.sampling
    if sp.grammar and sp.json_schema is None and rf_kind == "text":
        raise bad_request("Give either 'grammar' or 'tools', not both.", param="grammar")
    if rf_kind != "text" and choice != "auto":
        raise bad_request("'response_format' goes with tool_choice 'auto' (it shapes the reply when no tool is "
                          "called).", param="response_format")
    response = {"type": "object"} if rf_kind == "json_object" else rf_schema
    req.tool_response = response
    sp.grammar = None
    sp.json_schema = tools_mod.envelope_schema(tools, choice, response, parallel)
    sp.grammar_param = "tools"
    sp.schema_checks = [(t["parameters"], f"tools[{i}].function.parameters") for i, t in enumerate(tools)]
    if rf_kind == "json_schema":
        sp.schema_checks.append((rf_schema, "response_format.json_schema.schema"))


def render_args(req, template: str | None) -> tuple[list[dict], dict]:
    """The messages and extra template arguments to render (tools described, calls written);
    a template with its own tool-call format (Hermes <tool_call> tags, Llama 3.x) switches the
    request's grammar to it."""
    fmt = tools_mod.tool_format(template)
    if req.tool_choice is not None and fmt != "generic":
        req.tool_format = fmt
        sp = req.sampling
        sp.json_schema = None
        sp.grammar_builder = partial(_format_grammar, fmt=fmt, tools=req.tools, choice=req.tool_choice,
                                     response=req.tool_response, parallel=req.parallel_tool_calls)
    return tools_mod.prompt_messages(req.messages, req.tools, req.tool_choice, template)


def _format_grammar(model, fmt, tools, choice, response, parallel) -> str:
    try:
        return tools_mod.format_grammar(model, fmt, tools, choice, response, parallel)
    except FormatError as e:   # (each schema was checked alone first; this names the combination)
        raise RealmError(str(e)) from None


def message(text: str, fmt: str = "generic") -> tuple[dict, bool]:
    """(the assistant message, whether it calls tools) for a tool-enabled request's answer."""
    content, calls = tools_mod.parse_answer(text, fmt)
    msg = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        msg["tool_calls"] = calls
    return msg, bool(calls)


def deltas(text: str, fmt: str = "generic") -> tuple[list[dict], bool]:
    """The streamed deltas of a tool-enabled answer (as OpenAI streams them: each call's id, type
    and name first, then its arguments), and whether it calls tools."""
    content, calls = tools_mod.parse_answer(text, fmt)
    if not calls:
        return ([{"content": content}] if content else []), False
    out = []
    for k, c in enumerate(calls):
        out.append({"tool_calls": [{"index": k, "id": c["id"], "type": "function",
                                    "function": {"name": c["function"]["name"], "arguments": ""}}]})
        out.append({"tool_calls": [{"index": k, "function": {"arguments": c["function"]["arguments"]}}]})
    return out, True
