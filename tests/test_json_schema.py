"""JSON Schema -> GBNF in the core (core/json_schema.c, realm_json_schema_gbnf; issue 14).

Outside references: the `jsonschema` package decides what is valid (generated outputs over
several seeds and temperatures validate; instances it accepts are accepted by the grammar,
instances it refuses are refused), and llama.cpp's converter (llama-cpp-python's port,
its two outdated primitives replaced by the C++ converter's) gives the same allowed-token
sets state by state. Bad and hostile schemas are refused by name, quickly."""
from __future__ import annotations

import json
import time

import jsonschema
import pytest

from realm_web import Realm
from realm_web.errors import RealmError
from reference import llama_grammar_allowed

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1, "maxItems": 3},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                     "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["city", "zip"], "additionalProperties": False},
        "email": {"type": "string", "maxLength": 30},
    },
    "required": ["name", "age", "role", "tags", "address"],
    "additionalProperties": False,
}
TREE = {   # $defs and $ref (two levels; recursion is checked below, where its length is the test's own)
    "$defs": {"leaf": {"type": "object", "properties": {"value": {"type": "integer", "minimum": -50, "maximum": 50}},
                       "required": ["value"], "additionalProperties": False},
              "node": {"type": "object", "properties": {"value": {"type": "integer"},
                                                        "children": {"type": "array", "items": {"$ref": "#/$defs/leaf"},
                                                                     "maxItems": 3}},
                       "required": ["value", "children"]}},
    "$ref": "#/$defs/node",
}
RECURSIVE = {"$defs": {"n": {"type": "object", "properties": {"v": {"type": "integer"},
                                                              "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
                             "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/n"}
EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "day": {"type": "string", "format": "date"},
        "kind": {"anyOf": [{"const": "meeting"}, {"type": "object", "properties": {"other": {"type": "string",
                                                                                              "maxLength": 12}},
                                                   "required": ["other"]}]},
        "slot": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 23},
                                                  {"type": "integer", "minimum": 0, "maximum": 59}]},
        "price": {"type": "number", "minimum": 0, "exclusiveMaximum": 1000},
        "flags": {"type": ["boolean", "null"]},
    },
    "required": ["id", "day", "kind", "slot", "price", "flags"],
}
SCHEMAS = {"person": PERSON, "tree": TREE, "event": EVENT}
PROMPTS = {"person": "Describe a person as JSON.", "tree": "Write a small tree of numbers as JSON.",
           "event": "Describe a calendar event as JSON."}


@pytest.fixture(scope="module")
def realm(default_model_path):
    r = Realm.load(default_model_path, n_ctx=1024)
    yield r
    r.close()


def _rf(schema):
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_outputs_always_validate(realm, name):
    """Greedy and sampled (several seeds and temperatures): every finished output parses and
    validates; the model never gets to write anything else."""
    schema = SCHEMAS[name]
    runs = [dict(temperature=0)] + [dict(temperature=t, seed=s) for s, t in ((1, 0.7), (2, 1.0), (3, 1.4))]
    finished = 0
    for kw in runs:
        out = realm.chat([{"role": "user", "content": PROMPTS[name]}], max_tokens=240, response_format=_rf(schema), **kw)
        st = realm.last_stats
        if st.finish_reason == "stop":
            jsonschema.validate(json.loads(out), schema)
            finished += 1
        else:
            assert st.finish_reason == "length" and realm.session.grammar_state() in ("running", "complete"), out
    assert finished >= 2, "most runs should finish within 240 tokens"


def _accepts(realm, grammar: str, text: str) -> bool:
    """Whether the grammar takes the whole text and may end there (token by token, as sampling would)."""
    realm.session.set_grammar(grammar)
    try:
        for t in realm.tokenize(text, add_special=False):
            realm.session.grammar_accept(t)
        return realm.session.grammar_state() == "complete"
    except RealmError:
        return False
    finally:
        realm.session.set_grammar(None)


CASES = [   # (schema, texts the grammar takes, texts it refuses): jsonschema must call the first valid
    ({"type": "integer", "minimum": -25, "maximum": 312}, ["-25", "0", "7", "99", "100", "312"],
     ["-26", "313", "999", "012", "-0", "3.0"]),   # (the last three: not as llama.cpp writes integers)
    ({"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 1000}, ["10", "999"], ["9", "1000"]),
    ({"type": "number", "minimum": 1.5, "maximum": 4}, ["2", "2.75", "3.999", "4"], ["1", "4.5", "1.4"]),
    ({"type": "string", "minLength": 2, "maxLength": 4}, ['"ab"', '"abcd"', '"a\\"b"'], ['"a"', '"abcde"']),
    ({"type": "string", "format": "date"}, ['"2024-02-29"'], ['"2024-13-01"', '"24-01-01"']),
    ({"type": "string", "pattern": "^[A-Z][a-z]+-\\d{2}$"}, ['"Abc-12"'], ['"abc-12"', '"Abc-1"', '"A-12"']),
    ({"type": "array", "items": {"enum": [1, "x", None]}, "minItems": 1, "maxItems": 2}, ["[1]", '["x", null]'],
     ["[]", "[1, 1, 1]", "[2]"]),
    ({"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"const": "k"}}, "required": ["b"],
      "additionalProperties": False}, ['{"b": "k"}', '{"b": "k", "a": true}'],
     ['{"a": true}', '{"b": "k", "c": 1}', '{"b": "j"}']),   # (required keys come first, as llama.cpp orders them)
    ({"type": "object"}, ['{}', '{"x": [1, {"y": null}]}'], ['[]', '"{}"']),   # any object, as llama.cpp
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
     ['{}', '{"a": 1}', '{"a": 1, "zz": "q"}', '{"zz": "q", "yy": "r"}'], ['{"zz": 3}']),
    (RECURSIVE, ['{"v": 1}', '{"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}, {"v": 4, "kids": []}]}]}'],
     ['{"v": 1, "kids": [{"v": 2, "kids": [{"x": 3}]}]}', '{"v": 1, "kids": [{"v": "2"}]}']),
    ({"oneOf": [{"type": "null"}, {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]}]},
     ["null", '["a", 1.5]'], ['["a"]', "[1, 1]"]),
]


@pytest.mark.parametrize("schema,good,bad", CASES, ids=[json.dumps(c[0])[:40] for c in CASES])
def test_grammar_agrees_with_jsonschema(realm, schema, good, bad):
    """Instances the grammar takes are valid (jsonschema); the invalid ones are refused."""
    g = realm.model.json_schema_gbnf(schema)
    check = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for text in good:
        assert check.is_valid(json.loads(text)), text
        assert _accepts(realm, g, text), (text, g)
    for text in bad:
        assert not _accepts(realm, g, text), (text, g)


# llama-cpp-python's port of the converter lags llama.cpp's C++ one in two primitives; these
# are the C++ converter's (common/json-schema-to-grammar.cpp), which the core follows
CPP_PRIMITIVES = {"space": '| " " | "\\n"{1,2} [ \\t]{0,20}',
                  "char": '[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})'}


@pytest.mark.needs_llama_cpp
def test_allowed_tokens_equal_llama_cpp(realm, default_model_path, llama_ref):
    """Along a valid instance, the allowed tokens equal those of llama.cpp's grammar sampler
    running llama.cpp's own conversion of the same schema."""
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "role": {"enum": ["admin", "user"]},
        "tags": {"type": "array", "items": {"type": "string"}}, "score": {"type": "number"}, "ok": {"type": "boolean"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"]}}, "required": ["name", "age", "role"]}
    text = json.dumps({"name": "Tom é\\n", "age": 31, "role": "user", "tags": ["a", "b"], "address": {"city": "Oslo"}},
                      indent=1)
    theirs = "\n".join(f"{ln.split(' ::= ')[0]} ::= {CPP_PRIMITIVES[ln.split(' ::= ')[0]]}"
                       if ln.split(" ::= ")[0] in CPP_PRIMITIVES else ln
                       for ln in json_schema_to_gbnf(json.dumps(schema)).splitlines())
    llm = llama_ref._get(default_model_path)
    smpl = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(llm.model), theirs.encode(), b"root")
    assert smpl
    try:
        realm.session.set_grammar(realm.model.json_schema_gbnf(schema))
        n_vocab = realm.info.n_vocab
        ids = realm.tokenize(text, add_special=False)
        for t in ids + [None]:
            ours = realm.session.grammar_allowed()
            assert ours == llama_grammar_allowed(llama_cpp, smpl, n_vocab), t
            if t is None:
                break
            realm.session.grammar_accept(t)
            llama_cpp.llama_sampler_accept(smpl, t)
        assert realm.session.grammar_state() == "complete"
    finally:
        llama_cpp.llama_sampler_free(smpl)
        realm.session.set_grammar(None)


BAD = [
    ('{"type": ', "invalid JSON at byte 9"),
    ({"type": "strin"}, "unknown type 'strin'"),
    ({"type": "object", "properties": {"a": {"type": 3}}}, "at /properties/a: 'type' must be a string"),
    ({"not": {"type": "string"}}, "'not' is not supported"),
    ({"type": "array", "uniqueItems": True}, "'uniqueItems' is not supported"),
    ({"$ref": "#/$defs/missing"}, "does not exist: #/$defs/missing"),
    ({"$ref": "https://example.com/s.json"}, "no remote or nested refs"),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "loops"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum above maximum"),
    ({"type": "array", "minItems": 3, "maxItems": 1}, "maxItems is less than minItems"),
    ({"type": "string", "minLength": -1}, "'minLength' must be a non-negative integer"),
    ({"enum": []}, "'enum' must be a non-empty array"),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf' with more than one schema"),
    ({"type": "string", "pattern": "^(a$"}, "pattern"),
    ({"type": "string", "pattern": "(?=a)b"}, "lookarounds"),
    ({"type": "object", "required": ["x"], "additionalProperties": False}, "'x' is not in 'properties'"),
    (False, "admits no value"),
]


@pytest.mark.parametrize("schema,msg", BAD, ids=[str(b[1]) for b in BAD])
def test_bad_schemas_are_named(realm, schema, msg):
    with pytest.raises(RealmError, match="JSON schema") as e:
        realm.model.json_schema_gbnf(schema)
    assert msg in str(e.value)


def _bounded(fn, limit=10.0):
    t = time.perf_counter()
    try:
        fn()
        err = None
    except RealmError as e:
        err = str(e)
    assert time.perf_counter() - t < limit
    return err


def test_hostile_schemas_are_refused_or_bounded(realm):
    deep: dict = {"type": "string"}
    for _ in range(200):
        deep = {"type": "array", "items": deep}
    assert "nested more than 64 deep" in _bounded(lambda: realm.model.json_schema_gbnf(deep))
    very_deep = "[" * 100000 + "]" * 100000           # the JSON reader's own depth limit
    assert "nested too deeply" in _bounded(lambda: realm.model.json_schema_gbnf(very_deep))
    assert "more than 1024 values" in _bounded(lambda: realm.model.json_schema_gbnf({"enum": list(range(5000))}))
    huge = {"type": "string", "pattern": "a" * (1 << 20)}
    assert "larger than 1 MiB" in _bounded(lambda: realm.model.json_schema_gbnf(huge))
    long_pat = {"type": "string", "pattern": "a" * 5000}
    assert "longer than 4096 bytes" in _bounded(lambda: realm.model.json_schema_gbnf(long_pat))
    explode = {"type": "string", "pattern": "((a{100}){100}){100}"}
    assert "expand past 100000" in _bounded(lambda: realm.model.json_schema_gbnf(explode))
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(300)}}
    assert "more than 256 properties" in _bounded(lambda: realm.model.json_schema_gbnf(wide))
    # a grammar past 1 MiB from a 180 KB schema (its object rules made once per listed type)
    fat = {"type": ["object"] * 7, "properties": {f"{i:03d}" + "p" * 700: {"type": "null"} for i in range(250)}}
    assert "larger than 1 MiB" in _bounded(lambda: realm.model.json_schema_gbnf(fat))
    # regexes that explode in backtracking engines: one stack set per step here, bounded
    for pat in ["^(a*)*$", "^(a|a)*b$", "^([a-z]+)+[0-9]$", "^(a?){30}a{30}$"]:
        err = _bounded(lambda: realm.generate("aaaa", max_tokens=40, temperature=0,
                                              response_format=_rf({"type": "string", "pattern": pat})))
        assert err is None or "parse stacks" in err, (pat, err)
    # left recursion through anyOf + $ref "#": refused when compiled, by name
    left = realm.model.json_schema_gbnf({"anyOf": [{"$ref": "#"}, {"type": "null"}]})
    assert "left recursion" in _bounded(lambda: realm.model.grammar(left))
    # the instance still works after all of it
    assert realm.generate("Hi", max_tokens=8, temperature=0, response_format=_rf({"type": "boolean"})).strip() in ("true", "false")


def test_realm_chat_message_tools(realm):
    """Realm.chat_message: the Python API's tool calls (the server's format and checks)."""
    params = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": params}},
             {"type": "function", "function": {"name": "noop"}}]
    ask = [{"role": "user", "content": "Weather in Rome?"}]
    msg = realm.chat_message(ask, tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}},
                             max_tokens=60, temperature=0)
    assert msg["content"] is None and [c["function"]["name"] for c in msg["tool_calls"]] == ["get_weather"]
    jsonschema.validate(json.loads(msg["tool_calls"][0]["function"]["arguments"]), params)
    assert "tool_calls" not in realm.chat_message(ask, tools=tools, tool_choice="none", max_tokens=8, temperature=0)
    with pytest.raises(RealmError, match=r"tools\[1\].function.parameters"):
        realm.chat_message(ask, tools=[tools[0], {"type": "function", "function": {"name": "x",
                                                                                 "parameters": {"type": "frob"}}}])
