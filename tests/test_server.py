"""`realm serve` through the official `openai` Python client: chat, completions,
streaming, models, embeddings, API keys, rate limits, metrics.

One server (a thread, a free 127.0.0.1 port, the default model) for the module;
generations are greedy and a few tokens long."""
from __future__ import annotations

import base64
import concurrent.futures as cf

import gguf
import httpx
import numpy as np
import openai
import pytest
from server_helpers import make_keys, metric, start_thread_server

TENANTS = ["alpha", "beta"]


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "keys.sqlite"


@pytest.fixture(scope="module")
def keys(keys_file):
    return make_keys(keys_file, TENANTS)


@pytest.fixture(scope="module")
def server(default_model_path, keys_file, keys):
    srv = start_thread_server(keys_path=str(keys_file), models=[("smol", str(default_model_path))])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server, keys):
    return openai.OpenAI(base_url=server.base_url, api_key=keys["alpha"], max_retries=0, timeout=120)


def test_models_list(client, server, keys, default_model_path):
    models = client.models.list()
    assert [m.id for m in models.data] == ["smol"]
    assert models.data[0].object == "model"
    assert client.models.retrieve("smol").id == "smol"
    # no --ctx: the same default context as Realm (DEFAULT_CTX, at most the trained context)
    from realm_web import Realm
    from realm_web.limits import DEFAULT_CTX
    r = httpx.get(server.base_url + "/models/smol", headers={"authorization": f"Bearer {keys['alpha']}"}).json()
    with Realm.load(default_model_path) as realm:
        assert r["context_length"] == realm.n_ctx == min(DEFAULT_CTX, realm.info.n_ctx_train)


def test_completion_greedy_matches_realm(client, default_model_path):
    r = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=3, temperature=0)
    from realm_web import Realm
    with Realm.load(default_model_path) as realm:
        want = realm.generate("The capital of France is", max_tokens=3, temperature=0)
        n_prompt = len(realm.tokenize("The capital of France is", parse_special=True))
    assert r.choices[0].text == want
    assert r.choices[0].text.startswith(" Paris")
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    assert r.usage.prompt_tokens == n_prompt
    assert r.usage.total_tokens == n_prompt + 3
    assert r.object == "text_completion" and r.model == "smol"


def test_chat_and_stream_agree(client):
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
    r = client.chat.completions.create(model="smol", messages=msgs, max_tokens=5, temperature=0)
    text = r.choices[0].message.content
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 10

    stream = client.chat.completions.create(model="smol", messages=msgs, max_tokens=5, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    parts, finish, usage, ids = [], None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(parts) == text
    assert finish == r.choices[0].finish_reason
    assert usage.completion_tokens == r.usage.completion_tokens
    assert usage.prompt_tokens == r.usage.prompt_tokens
    assert usage.prompt_tokens_details.cached_tokens > 0      # the same prompt again: prefix reuse
    assert len(ids) == 1


def test_completion_stream(client):
    stream = client.completions.create(model="smol", prompt="One, two, three,", max_tokens=4, temperature=0,
                                       stream=True)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].text for c in chunks)
    r = client.completions.create(model="smol", prompt="One, two, three,", max_tokens=4, temperature=0)
    assert text == r.choices[0].text


def test_stop_sequence(client):
    base = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=4, temperature=0)
    text = base.choices[0].text                           # " Paris.\n\n"
    cut = text.index(".")
    r = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=4, temperature=0,
                                  stop=["."])
    assert r.choices[0].text == text[:cut]
    assert r.choices[0].finish_reason == "stop"


def test_unset_sampling_fields_take_openais_defaults(client, default_model_path):
    """A seeded request that sets no sampling field samples exactly as Realm does with the
    OPENAI table (temperature 1, top_p 1, top-k and min-p off) and the same seed."""
    from realm_web import Realm
    from realm_web.sampling import OPENAI
    prompt = "My favourite animal is"
    got = client.completions.create(model="smol", prompt=prompt, max_tokens=12, seed=99).choices[0].text
    with Realm.load(default_model_path) as realm:
        assert got == realm.generate(prompt, max_tokens=12, seed=99, **OPENAI)
        assert got != realm.generate(prompt, max_tokens=12, seed=99)   # Realm's own (llama.cpp's) defaults differ


def test_seed_reproducible(client):
    kw = dict(model="smol", prompt="Once upon a time", max_tokens=6, temperature=1.0, top_p=0.9)
    a = client.completions.create(seed=1234, **kw).choices[0].text
    b = client.completions.create(seed=1234, **kw).choices[0].text
    assert a == b


def test_embeddings(client, server, keys):
    e = client.embeddings.create(model="smol", input=["a red apple", "a red apple", "the stock market fell"])
    vecs = np.array([d.embedding for d in e.data], dtype=np.float64)
    assert vecs.shape == (3, 576)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)   # L2-normalised
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)                     # deterministic
    assert vecs[0] @ vecs[2] < 0.999
    assert e.usage.prompt_tokens > 0
    # the float encoding (the openai client asks for base64) gives the same numbers
    r = httpx.post(server.base_url + "/embeddings", headers={"authorization": f"Bearer {keys['alpha']}"},
                   json={"model": "smol", "input": "a red apple", "encoding_format": "float"}, timeout=60).json()
    np.testing.assert_allclose(np.array(r["data"][0]["embedding"]), vecs[0], atol=1e-6)
    r64 = httpx.post(server.base_url + "/embeddings", headers={"authorization": f"Bearer {keys['alpha']}"},
                     json={"model": "smol", "input": "a red apple", "encoding_format": "base64"}, timeout=60).json()
    v64 = np.frombuffer(base64.b64decode(r64["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(v64, vecs[0], atol=1e-6)


def test_embedding_equals_session_embed(server, keys, default_model_path):
    """The server embeds through Session.embed_*: the same numbers as Session.embed, in f32."""
    from realm_web import Realm
    text = "a red apple"
    r = httpx.post(server.base_url + "/embeddings", headers={"authorization": f"Bearer {keys['alpha']}"},
                   json={"model": "smol", "input": text, "encoding_format": "base64"}, timeout=60).json()
    got = np.frombuffer(base64.b64decode(r["data"][0]["embedding"]), "<f4")
    with Realm.load(default_model_path) as realm:
        want = realm.session.embed(realm.tokenize(text))
        assert realm.session.n_past == 0                   # the cache is left empty
    assert np.array_equal(got, np.array(want, np.float32))


def test_embedding_is_mean_of_final_norm_states(server, keys, default_model_path):
    """The pooling docs/SERVER.md states: the mean over the input's tokens of the final-norm hidden state
    (what the output head reads), L2-normalised. The head is linear, so W_out @ mean(h) = mean over tokens
    of the logits: the embedding, pushed through the (tied) output matrix, must reproduce the mean logits."""
    from realm_web import Realm
    text = "Hello there, general Kenobi"
    r = httpx.post(server.base_url + "/embeddings", headers={"authorization": f"Bearer {keys['beta']}"},
                   json={"model": "smol", "input": text, "encoding_format": "float"}, timeout=60).json()
    emb = np.array(r["data"][0]["embedding"], dtype=np.float64)
    rows = 8192                                    # a slice of the vocabulary is plenty (and quick)
    with Realm.load(default_model_path) as realm:
        ids = realm.tokenize(text, add_special=True, parse_special=False)
        realm.session.eval(ids, all_logits=True)
        mean_logits = realm.session.logits().astype(np.float64).mean(axis=0)[:rows]
        m = realm.model
        tensors = {t.name: t for t in m.tensors()}
        w = tensors.get("output.weight") or tensors["token_embd.weight"]   # (tied) output head
        row_bytes = w.nbytes // w.shape[1]
        with open(default_model_path, "rb") as f:
            f.seek(m.data_offset() + w.offset)
            raw = np.frombuffer(f.read(rows * row_bytes), np.uint8).reshape(rows, row_bytes)
    assert r["usage"]["prompt_tokens"] == len(ids)
    W = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(w.type)).astype(np.float64)   # (rows, n_embd)
    proj = W @ emb
    corr = np.corrcoef(proj, mean_logits)[0, 1]
    assert corr > 0.999, corr
    assert int(np.argmax(proj)) == int(np.argmax(mean_logits))


def test_auth_required(server, keys_file):
    bad = openai.OpenAI(base_url=server.base_url, api_key="sk-realm-00000000-" + "0" * 48, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.models.list()
    body = ei.value.body
    assert body["code"] == "invalid_api_key" and "message" in body
    r = httpx.get(server.base_url + "/models")          # no key at all
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(server.base_url + "/chat/completions", json={"model": "smol", "messages": []})
    assert r.status_code == 401                          # auth comes before validation


def test_disable_enable_revoke_take_effect_at_once(server, keys_file):
    from realm_web.server.keys import KeyStore
    ks = KeyStore(keys_file)
    rec, key = ks.generate("gamma")
    c = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    assert c.models.list().data
    ks.set_disabled(True, kid=rec.id)
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    ks.set_disabled(False, kid=rec.id)
    assert c.models.list().data
    ks.revoke(kid=rec.id)
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    assert ks.set_disabled(False, kid=rec.id) == 0       # a revoked key cannot come back
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    ks.close()


def test_unknown_model_404(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["param"] == "model" and ei.value.body["code"] == "model_not_found"


def test_rate_limit_requests(server, keys_file):
    from realm_web.server.keys import KeyStore
    ks = KeyStore(keys_file)
    _, key = ks.generate("limited-rpm", rpm=3)
    ks.close()
    c = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)

    def one(_):
        try:
            c.completions.create(model="smol", prompt="Hi", max_tokens=1, temperature=0)
            return 200, None
        except openai.RateLimitError as e:
            return 429, e.response.headers.get("retry-after")

    with cf.ThreadPoolExecutor(8) as ex:           # 8 at once against a bucket of 3
        res = list(ex.map(one, range(8)))
    assert sorted(s for s, _ in res).count(200) == 3
    limited = [ra for s, ra in res if s == 429]
    assert len(limited) == 5 and all(ra and int(ra) >= 1 for ra in limited)
    assert metric(server.url, "realm_rate_limited_total", tenant="limited-rpm", limit="requests") == 5


def test_rate_limit_tokens_reserved_under_concurrency(server, keys_file):
    """A tokens/min bucket of 10: two concurrent requests of max_tokens=6 cannot both be admitted."""
    from realm_web.server.keys import KeyStore
    ks = KeyStore(keys_file)
    _, key = ks.generate("limited-tpm", tpm=10)
    ks.close()
    c = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)

    def one(_):
        try:
            c.completions.create(model="smol", prompt="Hi", max_tokens=6, temperature=0, stop=["never"])
            return 200
        except openai.RateLimitError as e:
            assert e.body["type"] == "tokens"
            return 429

    with cf.ThreadPoolExecutor(4) as ex:
        res = list(ex.map(one, range(4)))
    assert res.count(200) == 1 and res.count(429) == 3


def test_health_ready_metrics(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    r = httpx.get(server.url + "/ready")
    assert r.status_code == 200 and r.json()["models"] == ["smol"]
    text = httpx.get(server.url + "/metrics").text
    for name in ("realm_requests_total", "realm_request_duration_seconds_bucket", "realm_time_to_first_token_seconds",
                 "realm_prompt_tokens_total", "realm_generated_tokens_total", "realm_tokens_per_second",
                 "realm_queue_depth", "realm_sessions", "realm_model_memory_bytes", "realm_active_requests"):
        assert name in text, name
    assert metric(server.url, "realm_generated_tokens_total", tenant="alpha", model="smol") > 0
    assert metric(server.url, "realm_requests_total", tenant="alpha", model="smol", endpoint="completions",
                  status="200") > 0
    assert metric(server.url, "realm_model_memory_bytes", model="smol") > 90e6


def test_request_id_header(server, keys):
    r = httpx.get(server.base_url + "/models", headers={"authorization": f"Bearer {keys['alpha']}",
                                                         "x-request-id": "my-trace-42"})
    assert r.headers["x-request-id"] == "my-trace-42"
    r = httpx.get(server.base_url + "/models", headers={"authorization": f"Bearer {keys['alpha']}"})
    assert r.headers["x-request-id"].startswith("req_")


def test_several_models(default_model_path, tmp_path):
    """Two files -> two model instances (two schedulers); two ids of one file -> one instance."""
    import shutil
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(default_model_path, copy)
    srv = start_thread_server(no_auth=True, models=[("a", str(default_model_path)), ("b", str(copy)),
                                                     ("a2", str(default_model_path))])
    try:
        c = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        assert sorted(m.id for m in c.models.list().data) == ["a", "a2", "b"]
        texts = {m: c.completions.create(model=m, prompt="The capital of France is", max_tokens=2,
                                         temperature=0).choices[0].text for m in ("a", "b", "a2")}
        assert len(set(texts.values())) == 1
        w = srv.realm.workers
        assert w["a"] is w["a2"] and w["a"] is not w["b"] and w["a"].model is not w["b"].model
        assert metric(srv.url, "realm_generated_tokens_total", model="b") == 2
    finally:
        srv.stop()


def test_session_pool_never_crosses_tenants(default_model_path):
    from realm_web import store
    from realm_web.server.scheduler import SessionPool
    m = store.acquire(default_model_path)
    try:
        pool = SessionPool(m, 64, max_sessions=2)
        a = pool.acquire("A", [1, 2, 3])
        a.session.eval([1, 2, 3])
        pool.release(a)
        b = pool.acquire("B", [1, 2, 3])            # same prompt, other tenant: a fresh session
        assert b is not a and b.tenant == "B" and b.session.n_past == 0
        pool.release(b)
        a2 = pool.acquire("A", [1, 2, 3, 4])         # A's own session comes back, cache and all
        assert a2 is a and a2.tokens == [1, 2, 3]
        pool.release(a2)
        c = pool.acquire("C", [1])                   # pool full: the LRU idle session (B's) is freed
        assert c.tenant == "C" and c.session.n_past == 0
        assert sorted(e.tenant for e in pool.entries) == ["A", "C"]
        assert pool.acquire("A", [1]) is a
        assert pool.acquire("D", [1]) is None        # every session busy: the request waits
        pool.close()
    finally:
        store.release(m)
