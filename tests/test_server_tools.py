"""Structured output on the server through the real openai clients (Python and npm; issue 14):
response_format json_schema (outputs validate with jsonschema; bad schemas are 400s naming the
field), and tools + tool_choice (two tools, every tool_choice, streamed and not: the arguments
validate against each tool's parameters; tool messages round-trip through the chat template)."""
from __future__ import annotations

import json
import shutil
import subprocess

import jsonschema
import openai
import pytest

from server_helpers import start_thread_server
from test_server_clients import JS_DIR, _npm_install

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                            "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer", "minimum": -1000, "maximum": 1000},
                                        "b": {"type": "integer", "minimum": -1000, "maximum": 1000}},
       "required": ["a", "b"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD}}]
PARAMS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
FORECAST = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 20},
    "days": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
        "type": "object", "properties": {"day": {"enum": ["mon", "tue", "wed", "thu", "fri"]},
                                         "high": {"type": "integer", "minimum": -40, "maximum": 50},
                                         "sky": {"enum": ["sun", "rain", "cloud"]}},
        "required": ["day", "high", "sky"], "additionalProperties": False}}},
    "required": ["city", "days"], "additionalProperties": False}


@pytest.fixture(scope="module")
def server(default_model_path):
    srv = start_thread_server(no_auth=True, models=[("smol", str(default_model_path))])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)


def _rf(schema):
    return {"type": "json_schema", "json_schema": {"name": "forecast", "schema": schema, "strict": True}}


def test_json_schema_outputs_validate(client):
    finished = 0
    for kw in [dict(temperature=0), dict(temperature=0.8, seed=1), dict(temperature=1.2, seed=2)]:
        r = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "A 3-day forecast."}],
                                           response_format=_rf(FORECAST), max_tokens=200, **kw)
        if r.choices[0].finish_reason == "stop":
            jsonschema.validate(json.loads(r.choices[0].message.content), FORECAST)
            finished += 1
    assert finished >= 2
    s = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "A 3-day forecast."}],
                                       response_format=_rf(FORECAST), max_tokens=200, temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
    jsonschema.validate(json.loads(text), FORECAST)


@pytest.mark.parametrize("body,param,msg", [
    ({"response_format": _rf({"type": "strin"})}, "response_format.json_schema.schema", "unknown type 'strin'"),
    ({"response_format": _rf({"type": "object", "properties": {"a": {"not": {}}}})},
     "response_format.json_schema.schema", "/properties/a: 'not' is not supported"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "expected an object"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}},
     "response_format.json_schema.name", "letters, digits"),
    ({"response_format": {"type": "yaml"}}, "response_format.type", "'yaml'"),
    ({"response_format": _rf({"enum": list(range(2000))})}, "response_format.json_schema.schema", "more than 1024"),
    ({"response_format": _rf({"type": "string", "pattern": "a" * 5000})}, "response_format.json_schema.schema",
     "longer than 4096"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": "frob"}}}]},
     "tools[0].function.parameters", "unknown type 'frob'"),
    ({"tools": [{"type": "function", "function": {"name": "x y"}}]}, "tools[0].function.name", "letters"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name", "no tool is named 'nope'"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice", "expected 'none'"),
    ({"tool_choice": "required"}, "tool_choice", "needs 'tools'"),
])
def test_bad_schemas_and_tools_are_400s(client, body, param, msg):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smol", messages=ASK, max_tokens=8, **body)
    assert e.value.body["param"] == param and msg in e.value.body["message"], e.value.body


def _check_calls(calls, only=None):
    assert calls
    for c in calls:
        assert c.type == "function" and c.id.startswith("call_")
        assert c.function.name in PARAMS and (only is None or c.function.name == only)
        jsonschema.validate(json.loads(c.function.arguments), PARAMS[c.function.name])


def _streamed(client, **kw):
    """An OpenAI-style accumulation of a streamed answer: (content, {index: call}, finish_reason)."""
    content, calls, finish = "", {}, None
    for ch in client.chat.completions.create(model="smol", stream=True, **kw):
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        finish = ch.choices[0].finish_reason or finish
        content += d.content or ""
        for t in d.tool_calls or []:
            c = calls.setdefault(t.index, {"id": None, "name": "", "arguments": ""})
            c["id"] = t.id or c["id"]
            c["name"] += t.function.name or "" if t.function else ""
            c["arguments"] += t.function.arguments or "" if t.function else ""
    return content, calls, finish


@pytest.mark.parametrize("choice", ["required", "named", "auto", "none"])
def test_tool_choice(client, choice):
    tc = {"type": "function", "function": {"name": "add"}} if choice == "named" else choice
    kw = dict(messages=ASK, tools=TOOLS, tool_choice=tc, max_tokens=100, temperature=0)
    r = client.chat.completions.create(model="smol", **kw)
    ch = r.choices[0]
    content, calls, finish = _streamed(client, **kw)
    if choice in ("required", "named"):
        assert ch.finish_reason == "tool_calls" and ch.message.content is None
        _check_calls(ch.message.tool_calls, "add" if choice == "named" else None)
        if choice == "named":
            assert len(ch.message.tool_calls) == 1
    elif choice == "none":
        assert ch.message.tool_calls is None and ch.message.content
    else:   # auto: the model chooses; either way the answer is well formed
        if ch.message.tool_calls:
            assert ch.finish_reason == "tool_calls"
            _check_calls(ch.message.tool_calls)
        else:
            assert ch.message.content is not None
    # streamed: the same answer, as deltas (greedy)
    assert finish == ch.finish_reason
    if ch.message.tool_calls:
        assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == \
               [(c.function.name, c.function.arguments) for c in ch.message.tool_calls]
        assert all(c["id"].startswith("call_") for c in calls.values()) and not content
    else:
        assert not calls and content == ch.message.content


def test_sampled_tool_calls_validate(client):
    for seed in (1, 2, 3):
        r = client.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, tool_choice="required",
                                           max_tokens=100, temperature=1.0, seed=seed)
        if r.choices[0].finish_reason == "tool_calls":
            _check_calls(r.choices[0].message.tool_calls)


def test_tool_messages_round_trip(client, server, default_model_path):
    """An assistant's tool_calls and the tool's answer go back through the model's template
    (ChatML here: the calls written as the model writes them), and the model then answers."""
    from realm_web import chat as chat_mod
    from realm_web.core_model import CoreModel
    from realm_web.tools import parse_tools, prompt_messages
    first = client.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, tool_choice="required",
                                           max_tokens=100, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                     {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    r = client.chat.completions.create(model="smol", messages=history, tools=TOOLS, max_tokens=40, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    m = CoreModel(str(default_model_path), vocab_only=True)
    try:
        args = chat_mod.template_args(m)
        tools, choice = parse_tools(TOOLS, "auto")
        msgs, extra = prompt_messages([dict(x, content=x["content"] or "") for x in history], tools, choice,
                                      args["template"])
        text = chat_mod.render(messages=msgs, **args, **extra)
    finally:
        m.close()
    assert json.dumps({"tool_calls": [{"name": call.function.name, "arguments": json.loads(call.function.arguments)}]}) \
        in text
    assert '<|im_start|>tool\n{"temperature": 21}<|im_end|>' in text and '"name": "add"' in text


def test_openai_npm_client_tools(server):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    why = _npm_install()
    if why:
        pytest.skip(why)
    r = subprocess.run([node, str(JS_DIR / "openai_tools.mjs"), server.base_url, "smol", json.dumps(TOOLS)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("required", "named", "stream"):
        assert out[key]["finish"] == "tool_calls", out[key]
        for c in out[key]["calls"]:
            assert c["type"] == "function" and c["id"].startswith("call_")
            jsonschema.validate(json.loads(c["function"]["arguments"]), PARAMS[c["function"]["name"]])
    assert [c["function"]["name"] for c in out["named"]["calls"]] == ["add"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in out["stream"]["calls"]] == \
           [(c["function"]["name"], c["function"]["arguments"]) for c in out["required"]["calls"]]
    js = out["json_schema"]
    assert js["finish"] == "stop"
    jsonschema.validate(json.loads(js["content"]), js["schema"])


def test_templates_that_render_tools_get_them():
    """A template that renders tools and tool_calls itself (Llama 3.x style, no <tool_call> tags) gets
    them as fields, the calls' arguments as objects (as llama.cpp passes them)."""
    from realm_web import chat as chat_mod
    from realm_web.tools import parse_tools, prompt_messages
    tpl = ("{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>{% endif %}"
           "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% for c in m.tool_calls or [] %}<call>"
           "{{ c.function.name }} {{ c.function.arguments | tojson }}</call>{% endfor %}{% endfor %}")
    tools, choice = parse_tools(TOOLS, "auto")
    history = ASK + [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3"}]
    msgs, extra = prompt_messages(history, tools, choice, tpl)
    text = chat_mod.render(tpl, msgs, **extra)
    assert "<tools>get_weather;add;</tools>" in text
    assert '<call>add {"a": 1, "b": 2}</call>' in text and "<tool>3" in text
    assert "You can call these tools" not in text and "Respond in JSON format" in text


# Qwen2.5's tool template, shortened (its structure and the Hermes <tool_call> format kept)
QWEN_TOOLS = """{%- if tools %}<|im_start|>system
You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}{% for message in messages %}{% if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% for tc in message.tool_calls %}<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@pytest.fixture(scope="module")
def realm(default_model_path):
    from realm_web import Realm
    r = Realm.load(default_model_path, n_ctx=1024)
    yield r
    r.close()


def _accepts(realm, grammar, text):
    from realm_web.errors import RealmError
    realm.session.set_grammar(grammar)
    try:
        for t in realm.tokenize(text, add_special=False):
            realm.session.grammar_accept(t)
        return realm.session.grammar_state() == "complete"
    except RealmError:
        return False
    finally:
        realm.session.set_grammar(None)


@pytest.mark.parametrize("choice", ["required", "named", "auto"])
def test_hermes_tool_calls(realm, choice):
    """A template with Hermes <tool_call> tags (Qwen2.5) gets that format: its own tools block in
    the prompt, calls as tagged JSON whose arguments validate, free text only with "auto"."""
    from realm_web import chat as chat_mod
    from realm_web.tools import hermes_grammar, parse_answer, parse_tools, prompt_messages, tool_format
    tc = {"type": "function", "function": {"name": "add"}} if choice == "named" else choice
    tools, ch = parse_tools(TOOLS, tc)
    assert tool_format(QWEN_TOOLS) == "hermes"
    msgs, extra = prompt_messages(ASK, tools, ch, QWEN_TOOLS)
    prompt = chat_mod.render(QWEN_TOOLS, msgs, **extra)
    listed = prompt.rsplit("<tools>", 1)[1].split("</tools>")[0]   # (the first <tools></tools> is prose)
    assert '"name": "get_weather"' in listed and '"name": "add"' in listed
    g = hermes_grammar(realm.model, tools, ch)
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    assert _accepts(realm, g, call)
    assert _accepts(realm, g, call + "\n" + call) == (choice != "named")
    assert _accepts(realm, g, "It is sunny.") == (choice == "auto")
    assert not _accepts(realm, g, '<tool_call>\n{"name": "add", "arguments": {"a": "x"}}\n</tool_call>')
    # Greedy decoding of this small model repeats a call until max_tokens where several are allowed
    # (since the attention change of 57d8074); with one call (OpenAI's parallel_tool_calls: false)
    # the grammar ends, so does the run. Several calls are accepted above.
    g1 = hermes_grammar(realm.model, tools, ch, parallel=False)
    out = realm.generate(chat_mod.prompt_ids(realm.model, prompt), max_tokens=100, temperature=0, grammar=g1)
    content, calls = parse_answer(out, "hermes")
    if choice != "auto" or calls:
        assert realm.last_stats.finish_reason == "stop" and calls, out
        for c in calls:
            jsonschema.validate(json.loads(c["function"]["arguments"]), PARAMS[c["function"]["name"]])
        if choice == "named":
            assert [c["function"]["name"] for c in calls] == ["add"]
    else:
        assert content and not content.startswith("<")


@pytest.fixture(scope="module")
def qwen_server(default_model_path):
    import refmodels
    path = refmodels.with_chat_template(QWEN_TOOLS, default_model_path)
    srv = start_thread_server(no_auth=True, models=[("qwenish", str(path))])
    yield srv
    srv.stop()


def test_hermes_format_through_the_server(qwen_server):
    """A model whose own template writes <tool_call> tags: the server prompts and constrains in
    that format and answers OpenAI's tool_calls, streamed and not."""
    c = openai.OpenAI(base_url=qwen_server.base_url, api_key="none", max_retries=0, timeout=120)
    # one call: with several allowed, greedy decoding of this small model repeats the call to max_tokens
    kw = dict(model="qwenish", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False,
              max_tokens=100, temperature=0)
    r = c.chat.completions.create(**kw)
    assert r.choices[0].finish_reason == "tool_calls"
    _check_calls(r.choices[0].message.tool_calls)
    s = c.chat.completions.create(stream=True, **kw)
    got = [t for ch in s if ch.choices for t in (ch.choices[0].delta.tool_calls or [])]
    assert [t.function.name for t in got if t.function and t.function.name] == \
           [x.function.name for x in r.choices[0].message.tool_calls]


def test_parallel_tool_calls_false_gives_one_call(client, realm):
    from realm_web.tools import hermes_grammar, parse_tools
    r = client.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, tool_choice="required",
                                       parallel_tool_calls=False, max_tokens=100, temperature=0)
    assert r.choices[0].finish_reason == "tool_calls" and len(r.choices[0].message.tool_calls) == 1
    g = hermes_grammar(realm.model, *parse_tools(TOOLS, "required"), parallel=False)
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    assert _accepts(realm, g, call) and not _accepts(realm, g, call + "\n" + call)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smol", messages=ASK, tools=TOOLS, parallel_tool_calls="no", max_tokens=4)
    assert e.value.body["param"] == "parallel_tool_calls"


# A Llama 3.1-style tool template (the structure of Meta's: "Environment: ipython", the tools
# listed as JSON in the first user message, an assistant call as bare {"name", "parameters"} JSON,
# tool results in the ipython role), attached to the default model (llama.cpp's Llama 3.x handler)
LLAMA31_TOOLS = """{{- bos_token }}{%- if not tools is defined %}{%- set tools = none %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}
{%- else %}{%- set system_message = "" %}{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}{%- if tools is not none %}{{- "Environment: ipython\\n" }}{%- endif %}
{{- system_message }}{{- "<|eot_id|>" }}
{%- if tools is not none and messages | length > 0 %}{%- set first_user_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}
{{- '<|start_header_id|>user<|end_header_id|>\\n\\n' }}{{- "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\\n\\n" }}
{{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.\\n\\n' }}
{%- for t in tools %}{{- t | tojson }}{{- "\\n\\n" }}{%- endfor %}{{- first_user_message + "<|eot_id|>" }}{%- endif %}
{%- for message in messages %}
{%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- elif 'tool_calls' in message %}{%- set tool_call = message.tool_calls[0].function %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{{- '{"name": "' + tool_call.name + '", "parameters": ' }}{{- tool_call.arguments | tojson }}{{- "}<|eot_id|>" }}
{%- else %}{{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}{{- message.content }}{{- "<|eot_id|>" }}{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"""


@pytest.mark.parametrize("choice", ["required", "named", "auto"])
def test_llama3_tool_calls(realm, choice):
    """A Llama 3.1+ tool template gets that format: the template lists the tools, the model answers one
    bare {"name", "parameters"} call whose parameters validate, free text only with "auto"."""
    from realm_web import chat as chat_mod
    from realm_web.tools import llama3_grammar, parse_answer, parse_tools, prompt_messages, tool_format
    tc = {"type": "function", "function": {"name": "add"}} if choice == "named" else choice
    tools, ch = parse_tools(TOOLS, tc)
    assert tool_format(LLAMA31_TOOLS) == "llama3"
    msgs, extra = prompt_messages(ASK, tools, ch, LLAMA31_TOOLS)
    prompt = chat_mod.render(LLAMA31_TOOLS, msgs, **extra)
    assert "Environment: ipython" in prompt and '"name": "get_weather"' in prompt and '"name": "add"' in prompt
    assert "Respond in JSON format" not in prompt   # (the generic format's instruction)
    g = llama3_grammar(realm.model, tools, ch)
    call = '{"name": "add", "parameters": {"a": 1, "b": 2}}'
    assert _accepts(realm, g, call)
    assert _accepts(realm, g, '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}}') == \
        (choice != "named")
    assert not _accepts(realm, g, call + " " + call)   # one call a turn
    assert _accepts(realm, g, "It is sunny.") == (choice == "auto")
    assert not _accepts(realm, g, '{"name": "add", "parameters": {"a": "x", "b": 2}}')
    assert parse_answer("<|python_tag|>" + call, "llama3")[1][0]["function"]["arguments"] == '{"a": 1, "b": 2}'
    assert parse_answer('{"name": "add"}', "llama3") == ('{"name": "add"}', None)   # not a call: content
    out = realm.generate(chat_mod.prompt_ids(realm.model, prompt), max_tokens=100, temperature=0, grammar=g)
    content, calls = parse_answer(out, "llama3")
    if choice != "auto" or calls:
        assert realm.last_stats.finish_reason == "stop" and len(calls) == 1, out
        jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), PARAMS[calls[0]["function"]["name"]])
        if choice == "named":
            assert calls[0]["function"]["name"] == "add"
    else:
        assert content and not content.startswith("{")


@pytest.fixture(scope="module")
def llama3_server(default_model_path):
    import refmodels
    path = refmodels.with_chat_template(LLAMA31_TOOLS, default_model_path)
    srv = start_thread_server(no_auth=True, models=[("llamaish", str(path))])
    yield srv
    srv.stop()


def test_llama3_format_through_the_server(llama3_server):
    """The server prompts and constrains in the Llama 3.x format and answers OpenAI's tool_calls,
    streamed and not; a call and its ipython result round-trip through the template."""
    c = openai.OpenAI(base_url=llama3_server.base_url, api_key="none", max_retries=0, timeout=120)
    kw = dict(model="llamaish", tools=TOOLS, tool_choice="required", max_tokens=100, temperature=0)
    r = c.chat.completions.create(messages=ASK, **kw)
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    _check_calls(r.choices[0].message.tool_calls)
    assert len(r.choices[0].message.tool_calls) == 1
    s = c.chat.completions.create(messages=ASK, stream=True, **kw)
    got = [t for ch in s if ch.choices for t in (ch.choices[0].delta.tool_calls or [])]
    call = r.choices[0].message.tool_calls[0]
    assert [t.function.name for t in got if t.function and t.function.name] == [call.function.name]
    assert "".join(t.function.arguments or "" for t in got if t.function) == call.function.arguments
    back = ASK + [r.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id,
                                                                       "content": "18"}]
    r2 = c.chat.completions.create(messages=back, **{**kw, "tool_choice": "auto", "max_tokens": 30})
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens
    assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_completions_response_format(client, realm):
    """/v1/completions takes response_format too (as llama-server): json_schema outputs validate, whole
    and streamed, and are what Realm.generate(response_format=...) gives; json_object parses; bad is a 400."""
    prompt = "A 3-day weather forecast as JSON:"
    rf = _rf(FORECAST)
    r = client.completions.create(model="smol", prompt=prompt, max_tokens=200, temperature=0, extra_body={"response_format": rf})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].text), FORECAST)
    s = client.completions.create(model="smol", prompt=prompt, max_tokens=200, temperature=0, stream=True,
                                  extra_body={"response_format": rf})
    assert "".join(c.choices[0].text for c in s if c.choices) == r.choices[0].text
    assert realm.generate(prompt, max_tokens=200, temperature=0, response_format=rf) == r.choices[0].text
    o = client.completions.create(model="smol", prompt="A cat as JSON:", max_tokens=60, temperature=0.8, seed=4,
                                  extra_body={"response_format": {"type": "json_object"}})
    if o.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(o.choices[0].text), dict)
    else:
        assert o.choices[0].text.lstrip().startswith("{")
    for body, param in [({"response_format": _rf({"type": "strin"})}, "response_format.json_schema.schema"),
                        ({"response_format": {"type": "yaml"}}, "response_format.type"),
                        ({"response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'}, "grammar")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="smol", prompt=prompt, max_tokens=4, extra_body=body)
        assert e.value.body["param"] == param
