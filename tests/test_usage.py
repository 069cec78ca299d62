"""Usage metering and cost on the default store (SQLite): rows per request, /v1/usage and /metrics behind admin
keys, `realm usage`, price tables, and old key files adopting the versioned schema."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys

import httpx
import openai
import pytest

from server_helpers import ROOT, metric, start_thread_server

PRICES = {"tiny": {"prompt": 3.0, "cached": 1.0, "completion": 10.0}}


@pytest.fixture(scope="module")
def tiny(synthetic_model):
    return synthetic_model(n_layer=1, n_embd=64, n_ff=128, n_head=2, n_head_kv=1, seed=7)


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    from realm_web.server.keys import KeyStore
    d = tmp_path_factory.mktemp("usage")
    (d / "prices.json").write_text(json.dumps(PRICES))
    ks = KeyStore(d / "keys.sqlite")
    tenant = ks.generate("acme")[1]
    admin = ks.generate(None, admin=True)[1]
    ks.close()
    srv = start_thread_server(keys_path=str(d / "keys.sqlite"), models=[("tiny", str(tiny))], threads=1,
                              prices_path=str(d / "prices.json"), metrics_auth=True)
    yield srv, tenant, admin, d
    srv.stop()


def _cli(d, *args):
    return subprocess.run([sys.executable, "-m", "realm_web.cli", "usage", *args, "--db", str(d / "keys.sqlite"),
                           "--prices", str(d / "prices.json")], cwd=str(ROOT), capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_usage_rows_cost_and_admin_endpoints(setup):
    srv, tenant, admin, d = setup
    c = openai.OpenAI(base_url=srv.base_url, api_key=tenant, max_retries=0, timeout=60)
    for _ in range(2):   # the same client request id twice: two requests, two rows
        c.completions.create(model="tiny", prompt="Hello there", max_tokens=5, extra_headers={"x-request-id": "same"})
    chunks = list(c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=7,
                                            stream=True, stream_options={"include_usage": True}))
    u = chunks[-1].usage

    hdr = {"authorization": f"Bearer {admin}"}
    rows = httpx.get(srv.base_url + "/usage", params={"tenant": "acme"}, headers=hdr).json()["data"]
    assert len(rows) == 1 and rows[0]["requests"] == 3 and rows[0]["generated_tokens"] == 5 + 5 + 7
    r = rows[0]
    assert r["prompt_tokens"] >= u.prompt_tokens and r["latency_max_s"] > 0
    want = ((r["prompt_tokens"] - r["cached_tokens"]) * 3.0 + r["cached_tokens"] * 1.0 + 17 * 10.0) / 1e6
    assert r["cost_usd"] == pytest.approx(want)

    # the CLI reads the same rows: CSV, JSON, --since
    table = list(csv.DictReader(io.StringIO(_cli(d, "--csv").stdout)))
    assert len(table) == 1 and table[0]["generated_tokens"] == "17" and float(table[0]["cost_usd"]) == pytest.approx(want)
    assert json.loads(_cli(d, "--json", "--tenant", "acme").stdout) == rows
    assert json.loads(_cli(d, "--json", "--since", "2999-01-01").stdout) == []
    bad = _cli(d, "--since", "yesterday-ish")
    assert bad.returncode == 1 and "--since 'yesterday-ish'" in bad.stderr

    # admin keys only: /v1/usage and /metrics (metrics_auth); admin keys cannot generate
    assert httpx.get(srv.base_url + "/usage", headers={"authorization": f"Bearer {tenant}"}).status_code == 403
    assert httpx.get(srv.base_url + "/usage").status_code == 401
    assert httpx.get(srv.base_url + "/usage", params={"since": "soon"}, headers=hdr).status_code == 400
    assert httpx.get(srv.url + "/metrics").status_code == 401
    m = httpx.get(srv.url + "/metrics", headers=hdr)
    assert m.status_code == 200 and "realm_cost_usd_total" in m.text
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=srv.base_url, api_key=admin, max_retries=0).completions.create(
            model="tiny", prompt="x", max_tokens=1)


def test_cost_counter_per_tenant(setup):
    srv, tenant, admin, d = setup
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(srv.url + "/metrics", headers={"authorization": f"Bearer {admin}"}).text
    cost = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "realm_cost_usd_total" and s.labels.get("tenant") == "acme")
    rows = json.loads(_cli(d, "--json", "--tenant", "acme").stdout)
    assert cost == pytest.approx(sum(r["cost_usd"] for r in rows), rel=1e-6) and cost > 0


def test_price_table_errors(tmp_path):
    from realm_web.server.usage import Prices
    p = tmp_path / "p.json"
    p.write_text('{"m": {"prompt": -1}}')
    with pytest.raises(ValueError, match="'m'.prompt must be a number >= 0"):
        Prices.load(p)
    p.write_text('{"m": {"input": 1}}')
    with pytest.raises(ValueError, match="the entry for 'm'"):
        Prices.load(p)
    p.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        Prices.load(p)
    assert Prices({"*": {"prompt": 1, "completion": 2}}).cost("any", 1_000_000, 0, 500_000) == pytest.approx(2.0)


def test_old_keys_file_adopts_the_versioned_schema(tmp_path):
    """A keys file written before migrations existed (the old schema, no schema_version) keeps its keys."""
    from realm_web.server.keys import KeyStore, hash_key
    f = tmp_path / "old.sqlite"
    db = sqlite3.connect(f)
    db.executescript("""CREATE TABLE keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        name TEXT, created REAL NOT NULL, last_used REAL, disabled INTEGER NOT NULL DEFAULT 0,
        revoked INTEGER NOT NULL DEFAULT 0, rpm INTEGER, tpm INTEGER);
        CREATE TABLE tenants (name TEXT PRIMARY KEY, rpm INTEGER, tpm INTEGER);""")
    key = "sk-realm-0badcafe-" + "ab" * 24
    db.execute("INSERT INTO keys (id, tenant, hash, created, rpm) VALUES ('0badcafe', 'old', ?, 1.0, 7)",
               (hash_key(key),))
    db.commit()
    db.close()
    ks = KeyStore(f)
    rec = ks.authenticate(key)
    assert rec.tenant == "old" and rec.rpm == 7 and rec.role == "tenant" and not rec.admin
    from realm_web.server.migrations import MIGRATIONS
    assert [v for (v,) in ks.db.q("SELECT version FROM schema_version ORDER BY version")] == [v for v, _ in MIGRATIONS]
    ks.close()
    assert KeyStore(f).db.migrate() == MIGRATIONS[-1][0]   # a second open changes nothing


def test_grafana_dashboard_queries_metrics_the_server_exports(setup):
    import re
    srv, tenant, admin, d = setup
    text = httpx.get(srv.url + "/metrics", headers={"authorization": f"Bearer {admin}"}).text
    exported = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
    dash = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for e in exprs for n in re.findall(r"\brealm_\w+", e)}
    family = {n.removesuffix("_total") for n in exported} | exported
    assert used and not {n.removesuffix("_total") for n in used} - family, used - family


def test_admin_loads_and_unloads_models(setup, tiny, tmp_path):
    srv, tenant, admin, d = setup
    adm = {"authorization": f"Bearer {admin}"}
    body = {"id": "tiny2", "model": str(tiny)}
    assert httpx.post(srv.url + "/admin/models", json=body, headers={"authorization": f"Bearer {tenant}"}).status_code == 403
    r = httpx.post(srv.url + "/admin/models", json=body, headers=adm, timeout=60)
    assert r.status_code == 200 and r.json()["id"] == "tiny2"
    c = openai.OpenAI(base_url=srv.base_url, api_key=tenant, max_retries=0, timeout=60)
    assert c.completions.create(model="tiny2", prompt="Hi", max_tokens=2).usage.completion_tokens == 2
    again = httpx.post(srv.url + "/admin/models", json=body, headers=adm)
    assert again.status_code == 400 and "already served" in again.json()["error"]["message"]
    bad = httpx.post(srv.url + "/admin/models", json={"id": "x", "model": str(tmp_path / "none.gguf")}, headers=adm)
    assert bad.status_code == 400 and "none.gguf" in bad.json()["error"]["message"]
    assert httpx.delete(srv.url + "/admin/models/tiny2", headers=adm, timeout=60).json()["deleted"] is True
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="tiny2", prompt="Hi", max_tokens=2)
    assert c.completions.create(model="tiny", prompt="Hi", max_tokens=2).usage.completion_tokens == 2
    assert httpx.delete(srv.url + "/admin/models/tiny2", headers=adm).status_code == 404
