"""What the shared store and limiter cost per request, side by side in one run:

    python bench/bench_cluster.py [--requests 200] [--concurrency 4] [--model PATH]

The same tiny completions (max_tokens 1) against: one replica on SQLite with
in-process buckets (the default), one replica on PostgreSQL + Redis, and HAProxy
over two such replicas. Prints requests/s and p50/p99 latency, and each as a
ratio to the default. The model is whatever --model names (default: the
built-in one); a tiny model isolates the per-request overhead.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "cluster"))
import cluster as cl  # noqa: E402


def load(url: str, key: str, model: str, n: int, conc: int) -> dict:
    body = {"model": model, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
    hdr = {"authorization": f"Bearer {key}"}
    with httpx.Client(timeout=60) as c:
        c.post(url + "/v1/completions", json=body, headers=hdr).raise_for_status()   # warm

        def one(_):
            t = time.perf_counter()
            c.post(url + "/v1/completions", json=body, headers=hdr).raise_for_status()
            return time.perf_counter() - t
        t0 = time.perf_counter()
        with ThreadPoolExecutor(conc) as ex:
            lat = sorted(ex.map(one, range(n)))
        wall = time.perf_counter() - t0
    return {"rps": n / wall, "p50": statistics.median(lat), "p99": lat[int(0.99 * (n - 1))]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    if a.model is None:
        from realm_web.default_model import default_model_path
        a.model = str(default_model_path())
    mid = "m"
    args = ["--model", f"{a.model}:{mid}", "--threads", "1", "--log-level", "warning"]
    root = Path(tempfile.mkdtemp(prefix="realm-bench-cluster-"))
    rows = []
    # the default: one replica, SQLite, buckets in the process
    from realm_web.server.keys import KeyStore
    ks = KeyStore(root / "keys.sqlite")
    key = ks.generate("bench")[1]
    ks.close()
    r = cl.Replica(root, 0, str(root / "keys.sqlite"), None, args)
    try:
        r.wait_ready()
        rows.append(("1 replica, SQLite, in-process buckets", load(r.url, key, mid, a.requests, a.concurrency)))
    finally:
        r.stop()
    c = cl.Cluster(root / "cluster", replicas=2, serve_args=args)
    try:
        key = c.realm("api-key", "generate", "--tenant", "bench").stdout.strip().splitlines()[-1]
        rows.append(("1 replica, PostgreSQL + Redis", load(c.replicas[0].url, key, mid, a.requests, a.concurrency)))
        rows.append(("HAProxy over 2 replicas, PostgreSQL + Redis", load(c.lb.url, key, mid, a.requests, a.concurrency)))
    finally:
        c.stop()
    base = rows[0][1]
    print(f"{a.requests} completions (max_tokens 1), {a.concurrency} at a time, model {Path(a.model).name}")
    print(f"{'setup':46} {'req/s':>8} {'ratio':>6} {'p50 ms':>8} {'ratio':>6} {'p99 ms':>8}")
    for name, m in rows:
        print(f"{name:46} {m['rps']:8.1f} {m['rps'] / base['rps']:6.2f} {m['p50'] * 1e3:8.1f} "
              f"{m['p50'] / base['p50']:6.2f} {m['p99'] * 1e3:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
