"""LoRA adapters in `realm serve` (issue 13): adapters preloaded with --lora ID=PATH, the
per-request `lora` field (llama-server's shape, through the openai client's extra_body), a
tenant's default adapters in the key store, GET/POST /lora-adapters, and batched streams with
different adapters, each equal to the same generation by the Python API alone."""
from __future__ import annotations

import concurrent.futures as cf

import httpx
import openai
import pytest

import refmodels
from realm_web import Realm
from realm_web.server.keys import KeyStore
from server_helpers import make_keys, metric, start_thread_server

SYN = dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)
PROMPT = "Hello"
GEN = dict(max_tokens=10, temperature=0)


@pytest.fixture(scope="module")
def files(synthetic_model):
    syn = synthetic_model(**SYN)
    return dict(syn=syn, a=refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=1),
                b=refmodels.lora_adapter(syn, rank=16, qtype="F16", seed=2),
                c=refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=3, tensors=("ffn_up",)))


@pytest.fixture(scope="module")
def keys(tmp_path_factory, files):
    path = tmp_path_factory.mktemp("keys") / "keys.sqlite"
    k = make_keys(path, ["t1", "t2", "boss"])
    ks = KeyStore(path)
    ks.set_tenant_lora("t1", [("a", 1.0)])      # t1's requests get adapter a unless they name others
    ks.close()
    return path, k


@pytest.fixture(scope="module")
def server(files, keys):
    srv = start_thread_server(keys_path=str(keys[0]), models=[("syn", str(files["syn"]))],
                              lora=[("a", str(files["a"])), ("b", str(files["b"]))], admin_tenants=["boss"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def expected(files):
    """The Python API's greedy text, alone, per adapter set."""
    out = {}
    with Realm.load(str(files["syn"]), n_ctx=128) as r:
        for name, spec in (("base", []), ("a", [(files["a"], 1.0)]), ("b", [(files["b"], 0.5)]),
                           ("ab", [(files["a"], 1.0), (files["b"], 0.5)]), ("c", [(files["c"], 2.0)])):
            r.set_lora(spec)
            out[name] = r.generate(PROMPT, **GEN)
    assert len(set(out.values())) == len(out)    # every adapter set says something else
    return out


def _complete(srv, key, lora=None, **kw):
    c = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0, timeout=120)
    extra = {} if lora is None else {"lora": lora}
    return c.completions.create(model="syn", prompt=PROMPT, extra_body=extra, **GEN, **kw).choices[0].text


def test_request_and_tenant_adapters(server, keys, expected):
    k = keys[1]
    assert _complete(server, k["t2"]) == expected["base"]                       # no default: the base model
    assert _complete(server, k["t1"]) == expected["a"]                          # t1's default from the key store
    assert _complete(server, k["t2"]) == expected["base"]                       # ... never another tenant's
    assert _complete(server, k["t1"], lora=[]) == expected["base"]              # [] turns the default off
    assert _complete(server, k["t2"], lora=[{"id": "b", "scale": 0.5}]) == expected["b"]
    assert _complete(server, k["t2"], lora=[{"id": "a"}, {"id": "b", "scale": 0.5}]) == expected["ab"]
    assert _complete(server, k["t2"], lora=[{"id": "a", "scale": 0}]) == expected["base"]
    assert _complete(server, k["t2"]) == expected["base"]                       # a pooled session keeps nothing


def test_batched_streams_with_different_adapters_equal_alone(server, keys, expected):
    k = keys[1]
    reqs = [("t1", None, "a"), ("t2", None, "base"), ("t2", [{"id": "b", "scale": 0.5}], "b"),
            ("t1", [{"id": "a"}, {"id": "b", "scale": 0.5}], "ab"), ("t2", [{"id": "a"}], "a")] * 2
    s0 = metric(server.url, "realm_batch_sessions_sum", model="syn")
    n0 = metric(server.url, "realm_batch_sessions_count", model="syn")
    with cf.ThreadPoolExecutor(len(reqs)) as ex:
        got = list(ex.map(lambda r: _complete(server, k[r[0]], lora=r[1]), reqs))
    assert got == [expected[r[2]] for r in reqs]
    s1 = metric(server.url, "realm_batch_sessions_sum", model="syn")
    n1 = metric(server.url, "realm_batch_sessions_count", model="syn")
    assert (s1 - s0) / (n1 - n0) > 1.2, "streams were not batched"


def test_bad_lora_fields_are_400s(server, keys):
    k = keys[1]["t2"]
    for lora, msg in (([{"id": "nope"}], "unknown adapter id 'nope'"), ([{"id": "a", "scale": "x"}], "finite"),
                      ({"id": "a"}, "expected an array"), ([{"scale": 1}], "an object with an \"id\""),
                      ([{"id": "a"}, {"id": "a"}], "named twice")):
        with pytest.raises(openai.BadRequestError) as e:
            _complete(server, k, lora=lora)
        assert msg in str(e.value), (lora, str(e.value))
    assert _complete(server, k, lora=[{"id": "a"}])      # the server goes on


def test_lora_adapters_endpoint(server, keys, files, expected):
    k = keys[1]
    auth = lambda t: {"authorization": f"Bearer {k[t]}"}  # noqa: E731
    url = server.url + "/lora-adapters"
    listed = httpx.get(url, headers=auth("t2")).json()["data"]
    assert sorted((x["id"], x["path"], x["rank"]) for x in listed) == [("a", str(files["a"]), 8),
                                                                       ("b", str(files["b"]), 16)]
    r = httpx.post(url, headers=auth("t2"), json={"id": "c", "path": str(files["c"])})
    assert r.status_code == 403 and "may not load" in r.json()["error"]["message"]
    r = httpx.post(url, headers=auth("boss"), json={"id": "c", "path": str(files["c"])})
    assert r.status_code == 200 and r.json()["models"] == ["syn"]
    assert _complete(server, k["t2"], lora=[{"id": "c", "scale": 2.0}]) == expected["c"]
    r = httpx.post(url, headers=auth("boss"), json={"id": "d", "path": str(files["syn"])})   # a base model
    assert r.status_code == 400 and "general.type is not 'adapter'" in r.json()["error"]["message"]
    r = httpx.post(url, headers=auth("boss"), json={"id": "c", "unload": True})
    assert r.status_code == 200
    with pytest.raises(openai.BadRequestError, match="unknown adapter id 'c'"):
        _complete(server, k["t2"], lora=[{"id": "c"}])
    assert httpx.post(url, headers=auth("boss"), json={"id": "c", "unload": True}).status_code == 404
    assert sorted(x["id"] for x in httpx.get(url, headers=auth("t2")).json()["data"]) == ["a", "b"]
    # an admin key (issue 17's admin endpoints) may load and unload too
    ks = KeyStore(keys[0])
    _, admin_key = ks.generate(None, admin=True)
    ks.close()
    r = httpx.post(url, headers={"authorization": f"Bearer {admin_key}"}, json={"id": "c", "path": str(files["c"])})
    assert r.status_code == 200 and r.json()["models"] == ["syn"]
    r = httpx.post(url, headers={"authorization": f"Bearer {admin_key}"}, json={"id": "c", "unload": True})
    assert r.status_code == 200


def test_api_key_lora_cli(tmp_path, capsys):
    from realm_web.server.cli import main
    path = tmp_path / "k.sqlite"
    make_keys(path, ["t"])
    assert main(["api-key", "lora", "--tenant", "t", "a:0.5", "b", "--keys", str(path)]) == 0
    ks = KeyStore(path)
    assert ks.tenant_lora("t") == [("a", 0.5), ("b", 1.0)] and ks.tenant_lora("other") is None
    assert main(["api-key", "lora", "--tenant", "t", "--clear", "--keys", str(path)]) == 0
    assert ks.tenant_lora("t") is None
    ks.close()


def test_embeddings_are_the_base_models(server, keys):
    """A pooled session that last ran with the tenant's adapter embeds with the base model."""
    k = keys[1]
    c = lambda t: openai.OpenAI(base_url=server.base_url, api_key=k[t], max_retries=0, timeout=120)  # noqa: E731
    e2 = c("t2").embeddings.create(model="syn", input="Hello").data[0].embedding
    _complete(server, k["t1"])                                   # t1's session now holds adapter a
    e1 = c("t1").embeddings.create(model="syn", input="Hello").data[0].embedding
    assert e1 == e2
