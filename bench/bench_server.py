#!/usr/bin/env python3
"""Load test of `realm serve`, side by side with llama.cpp's server
(`python -m llama_cpp.server`, llama-cpp-python[server]) on the same model and machine.

At each concurrency level (default 1, 4, 16, 32) it runs one wave of streaming
/v1/completions requests (max(4, C) requests, C at a time, each a distinct short
prompt, greedy, at most `--max-tokens` tokens; the same requests for both servers)
and reports:

    req/s        completed requests / wall time of the wave
    TTFT p50/p95 seconds from sending a request to its first text chunk
    tok/s        generated tokens / wall time (all streams together)
    stream tok/s per-request decode speed after its first token (median)

    python bench/bench_server.py                     # both servers, default model
    python bench/bench_server.py --levels 1,4 --max-tokens 8
    python bench/bench_server.py --no-llama --json out.json

Bounded: one wave per level, and a level stops issuing requests after
--level-timeout seconds (the rest are counted as not run). Both servers get the
same requests; llama.cpp runs with --n_threads (default 1, as realm.wasm is
single-threaded). No numbers are asserted anywhere.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, path: str, timeout: float = 180) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def start_realm(model: str, port: int, args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "realm_web.server.cli", "serve", "--no-auth", "--port", str(port),
           "--model", f"{model}:bench", "--ctx", str(args.ctx), "--max-sessions", str(max(args.levels)),
           "--log-level", "warning"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_llama(model: str, port: int, args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--model_alias", "bench", "--host",
           "127.0.0.1", "--port", str(port), "--n_ctx", str(args.ctx), "--n_threads", str(args.threads),
           "--n_threads_batch", str(args.threads), "--verbose", "False",
           # by default a new request interrupts the stream in progress; queue them instead
           "--interrupt_requests", "False"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prompt(i: int) -> str:
    return f"Story {i}: Once upon a time, in a small village by the sea, there lived"


async def one(client: httpx.AsyncClient, url: str, i: int, max_tokens: int) -> dict:
    body = {"model": "bench", "prompt": prompt(i), "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    t_first = None
    chunks = 0
    usage = None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"ok": False, "status": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data.strip() == "[DONE]":
                break
            obj = json.loads(data)
            if obj.get("usage"):
                usage = obj["usage"]
            for ch in obj.get("choices") or []:
                if ch.get("text"):
                    chunks += 1
                    if t_first is None:
                        t_first = time.perf_counter()
    t1 = time.perf_counter()
    n = usage["completion_tokens"] if usage else chunks
    return {"ok": True, "ttft": (t_first or t1) - t0, "total": t1 - t0, "tokens": n,
            "decode_tps": (n - 1) / (t1 - t_first) if t_first and n > 1 and t1 > t_first else None}


async def wave(url: str, conc: int, n_req: int, max_tokens: int, timeout: float, offset: int) -> dict:
    sem = asyncio.Semaphore(conc)
    t_start = time.perf_counter()
    results: list[dict] = []
    skipped = 0
    limits = httpx.Limits(max_connections=conc + 4, max_keepalive_connections=conc + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def run(i):
            nonlocal skipped
            async with sem:
                if time.perf_counter() - t_start > timeout:
                    skipped += 1
                    return
                results.append(await one(client, url, offset + i, max_tokens))
        await asyncio.gather(*(run(i) for i in range(n_req)))
    wall = time.perf_counter() - t_start
    ok = [r for r in results if r["ok"]]
    ttfts = sorted(r["ttft"] for r in ok)
    dec = [r["decode_tps"] for r in ok if r["decode_tps"]]
    tokens = sum(r["tokens"] for r in ok)

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")
    return {"concurrency": conc, "requests": len(ok), "failed": len(results) - len(ok), "skipped": skipped,
            "wall_s": wall, "req_per_s": len(ok) / wall if wall else 0.0, "ttft_p50_s": pct(ttfts, 0.5),
            "ttft_p95_s": pct(ttfts, 0.95), "tok_per_s": tokens / wall if wall else 0.0,
            "stream_tok_per_s": statistics.median(dec) if dec else float("nan"), "tokens": tokens}


def run_server(name: str, start, model: str, args) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(model, port, args)
    try:
        wait_ready(url, proc, "/ready" if name == "realm" else "/v1/models")
        asyncio.run(wave(url, 1, 1, 2, 60, 10_000))          # warm-up
        out = []
        for c in args.levels:
            res = asyncio.run(wave(url, c, max(args.min_requests, c), args.max_tokens, args.level_timeout, c * 100))
            res["server"] = name
            out.append(res)
            print(f"  {name:6s} C={c:<3d} {res['requests']:3d} req  {res['req_per_s']:6.2f} req/s  "
                  f"TTFT p50 {res['ttft_p50_s']:6.2f} s p95 {res['ttft_p95_s']:6.2f} s  "
                  f"{res['tok_per_s']:6.1f} tok/s  stream {res['stream_tok_per_s']:6.1f} tok/s"
                  + (f"  ({res['skipped']} not run: level timeout)" if res["skipped"] else ""), flush=True)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="GGUF (default: the built-in SmolLM2-135M-Instruct)")
    ap.add_argument("--levels", default="1,4,16,32", help="concurrency levels (default 1,4,16,32)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--min-requests", type=int, default=4, help="requests per level at least (default 4)")
    ap.add_argument("--level-timeout", type=float, default=240.0, help="stop issuing requests after this (s)")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",")]
    from realm_web.default_model import default_model_path
    model = str(args.model or default_model_path())
    print(f"model {model}; {args.max_tokens} tokens per request; levels {args.levels}", flush=True)
    results = run_server("realm", start_realm, model, args)
    if not args.no_llama:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as e:
            print(f"llama.cpp server unavailable ({e}); pip install 'llama-cpp-python[server]'")
        else:
            results += run_server("llama", start_llama, model, args)
    by = {(r["server"], r["concurrency"]): r for r in results}
    if any(k[0] == "llama" for k in by):
        print("\nrealm / llama.cpp (higher is better for req/s and tok/s; lower for TTFT)")
        print(f"{'C':>4s} {'req/s':>8s} {'TTFT p50':>9s} {'tok/s':>8s}")
        for c in args.levels:
            a, b = by.get(("realm", c)), by.get(("llama", c))
            if a and b:
                def ratio(x, y):
                    return x / y if y else float("nan")
                print(f"{c:4d} {ratio(a['req_per_s'], b['req_per_s']):8.2f} "
                      f"{ratio(a['ttft_p50_s'], b['ttft_p50_s']):9.2f} {ratio(a['tok_per_s'], b['tok_per_s']):8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model, "max_tokens": args.max_tokens,
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
