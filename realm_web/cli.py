"""The `realm` command: run, info, bench."""
from __future__ import annotations

import argparse
import sys

from .errors import RealmError
from .limits import DEFAULT_CTX
from .lora import parse_spec as lora_spec
from .sampling import LLAMA_CPP


def _add_sampling(p: argparse.ArgumentParser) -> None:
    d = LLAMA_CPP   # `realm run` samples as llama.cpp does by default
    p.add_argument("-n", "--n-predict", type=int, default=128, help="tokens to generate (default 128; -1 = until the context is full)")
    p.add_argument("--temp", type=float, default=d["temperature"], help=f"temperature; 0 = greedy (default {d['temperature']})")
    p.add_argument("--top-k", type=int, default=d["top_k"], help=f"top-k sampling, <= 0 off (default {d['top_k']})")
    p.add_argument("--top-p", type=float, default=d["top_p"], help=f"top-p sampling, 1.0 off (default {d['top_p']})")
    p.add_argument("--min-p", type=float, default=d["min_p"], help=f"min-p sampling, 0 off (default {d['min_p']})")
    p.add_argument("--repeat-penalty", type=float, default=d["repeat_penalty"],
                   help=f"repetition penalty, 1.0 off (default {d['repeat_penalty']})")
    p.add_argument("--repeat-last-n", type=int, default=d["repeat_last_n"],
                   help=f"tokens the penalty looks back over (default {d['repeat_last_n']}, -1 = context)")
    p.add_argument("--frequency-penalty", type=float, default=d["frequency_penalty"])
    p.add_argument("--presence-penalty", type=float, default=d["presence_penalty"])
    p.add_argument("--seed", type=int, default=-1, help="RNG seed (default -1 = random)")
    p.add_argument("-c", "--ctx", type=int, default=0, help=f"context size (default min({DEFAULT_CTX}, the model's))")
    p.add_argument("-t", "--threads", type=int, default=0,
                   help="CPU threads (default: the CPUs available, at most 8; $REALM_THREADS)")


def add_cache_types(p: argparse.ArgumentParser) -> None:
    """-ctk/--cache-type-k and -ctv/--cache-type-v, llama.cpp's names (realm run, serve and bench)."""
    for flag, short, what in (("--cache-type-k", "-ctk", "K"), ("--cache-type-v", "-ctv", "V")):
        p.add_argument(short, flag, default="f16", choices=["f16", "q8_0"],
                       help=f"KV cache type for {what} (default f16; q8_0 takes about half the memory; CPU only)")


def cmd_run(args) -> int:
    from .realm import Realm
    r = Realm.load(args.model, n_ctx=args.ctx or None, device=args.device, threads=args.threads or None,
                   speculative=args.speculative, draft_model=args.draft_model, draft_tokens=args.draft_tokens,
                   lora=[lora_spec(x) for x in args.lora or []], cache_type_k=args.cache_type_k,
                   cache_type_v=args.cache_type_v)
    kw = dict(max_tokens=args.n_predict, temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
              min_p=args.min_p, repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
              frequency_penalty=args.frequency_penalty, presence_penalty=args.presence_penalty, seed=args.seed)
    if args.chat:
        pieces = r.chat_stream([{"role": "user", "content": args.prompt}], **kw)
    else:
        sys.stdout.write(args.prompt)
        pieces = r.stream(args.prompt, **kw)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    s = r.last_stats
    if not args.quiet:
        sys.stderr.write(
            f"\nprompt: {s.prompt_tokens} tokens ({s.cached_tokens} cached) in {s.prompt_seconds:.3f} s, "
            f"{s.prompt_tps:.1f} tok/s | generation: {s.generated_tokens} tokens in {s.generate_seconds:.3f} s, "
            f"{s.generate_tps:.1f} tok/s | finish: {s.finish_reason}\n")
        if s.speculative is not None:
            st = s.speculative
            sys.stderr.write(f"speculative ({r.speculator.drafter.name}): {st.drafted} drafted, {st.accepted} accepted "
                             f"({100 * st.acceptance:.0f} %), {st.steps} verify passes, {st.plain_steps} plain steps\n")
    r.close()
    return 0


def cmd_info(args) -> int:
    from . import store
    from .default_model import default_model_path
    path = args.model or default_model_path()
    m = store.acquire(path)
    i = m.info
    meta = m.metadata()
    print(f"model: {path}")
    print(f"  architecture {meta.get('general.architecture')}, name {meta.get('general.name')!r}")
    print(f"  {i.n_layer} layers, width {i.n_embd}, ffn {i.n_ff}, heads {i.n_head} ({i.n_head_kv} kv), "
          f"head dim {i.head_dim}, vocab {i.n_vocab}, trained context {i.n_ctx_train}")
    from collections import Counter
    from .quant_types import type_name
    counts = Counter(type_name(t.type) for t in m.tensors())
    print("  tensors: " + ", ".join(f"{n} x {k}" for k, n in counts.most_common()))
    print(f"  tokenizer {meta.get('tokenizer.ggml.model')} (pre {meta.get('tokenizer.ggml.pre', '-')}), "
          f"bos {i.bos}, eos {i.eos}, add_bos {i.add_bos}")
    print(f"  chat template: {'yes' if meta.get('tokenizer.chat_template') else 'no (ChatML fallback)'}")
    print(f"CPU core: {getattr(m.core, 'path', None) and m.core.path.name} ({getattr(m.core, 'width', 'wasm64')}), {m.simd} kernels, {m.threads} thread(s)")
    store.release(m)
    try:
        from .gpu.info import adapters_report
        print(adapters_report())
    except Exception as e:  # no wgpu or no Vulkan: say so, the CPU path is unaffected
        print(f"GPU adapters: none usable ({e})")
    return 0


def cmd_bench(args) -> int:
    table = args.quant_table
    for name, plain, quant in (("prompt_tokens", 256, 512), ("gen_tokens", 64, 128), ("repeat", 1, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quant if table else plain)
    if table and (args.model or args.device != "cpu" or args.no_llama):
        raise RealmError("--quant-table measures the default model's quantized files on the CPU with llama.cpp "
                         "beside: no MODEL, --device or --no-llama (use --files TYPE=FILE.gguf for other files)")
    kv = (args.cache_type_k, args.cache_type_v) != ("f16", "f16")
    if kv and (table or args.device != "cpu"):
        raise RealmError("-ctk / -ctv measure one file on the CPU (no --quant-table, no --device gpu)")
    if args.device == "gpu":
        from .gpu.bench import main as gpu_bench_main
        return gpu_bench_main(args)
    from .bench import main as bench_main
    return bench_main(args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realm", description="Run LLaMA-family GGUF models on realm.wasm.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="generate text from a prompt")
    run.add_argument("model", nargs="?", help="GGUF file, or a built-in model: smollm2-135m (the default, "
                     "SmolLM2-135M-Instruct) or gemma3-270m (Gemma 3 270M)")
    run.add_argument("-p", "--prompt", default="The capital of France is")
    run.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    run.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"],
                     help="cpu (realm.wasm), gpu (WebGPU via wgpu-py), auto (a real GPU if present)")
    run.add_argument("-q", "--quiet", action="store_true", help="no timing line on stderr")
    run.add_argument("--speculative", choices=["ngram", "draft"], default=None,
                     help="exact speculative decoding: ngram (prompt lookup) or draft (--draft-model); same text, faster")
    run.add_argument("--draft-model", default=None, help="a smaller GGUF with the same vocabulary (implies --speculative draft)")
    run.add_argument("--draft-tokens", type=int, default=8, help="at most this many drafts per step (default 8)")
    run.add_argument("--lora", action="append", metavar="PATH[:SCALE]",
                     help="a LoRA adapter (llama.cpp's GGUF format) with its scale (default 1); repeatable")
    add_cache_types(run)
    _add_sampling(run)
    run.set_defaults(fn=cmd_run)

    info = sub.add_parser("info", help="describe a model")
    info.add_argument("model", nargs="?")
    info.set_defaults(fn=cmd_info)

    bench = sub.add_parser(
        "bench", help="prompt and generation speed, side by side with llama.cpp (and wllama: --quant-table --browser)",
        description="realm.wasm vs llama.cpp on one file; or, with --quant-table, the default model at "
                    "Q4_0/Q4_1/Q4_K_M/Q5_K_M/Q6_K/Q8_0 under wasmtime, Node, llama.cpp native and (--browser) wllama and "
                    "realm.wasm in headless Chromium, one table with ratios against each peer (needs a checkout "
                    "and llama-cpp-python)")
    bench.add_argument("model", nargs="?")
    bench.add_argument("--prompt-tokens", type=int, default=None, help="default 256 (512 with --quant-table)")
    bench.add_argument("--gen-tokens", type=int, default=None, help="default 64 (128 with --quant-table)")
    bench.add_argument("--threads", default="1", help="thread count(s), e.g. 1,2 (default 1)")
    bench.add_argument("--repeat", type=int, default=None, help="best of N runs (default 1; 2 with --quant-table)")
    bench.add_argument("--no-llama", action="store_true", help="skip the llama.cpp side")
    bench.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    bench.add_argument("--json", help="also write the results here")
    add_cache_types(bench)
    bench.add_argument("--flash-attn", action="store_true",
                       help="llama.cpp with its flash attention (always with -ctv q8_0, which needs it); realm has one "
                            "attention")
    q = bench.add_argument_group("the quantization table (GitHub issue 6)")
    q.add_argument("--quant-table", action="store_true",
                   help="the default model in llama.cpp's quantizations, every engine, one table")
    q.add_argument("--types", default="Q4_0,Q4_1,Q4_K_M,Q5_K_M,Q6_K,Q8_0",
                   help="llama.cpp ftypes (default Q4_0,Q4_1,Q4_K_M,Q5_K_M,Q6_K,Q8_0)")
    q.add_argument("--files", help="TYPE=FILE.gguf,... instead of quantizing the default model")
    q.add_argument("--browser", action="store_true", help="also wllama and realm.wasm in headless Chromium")
    q.add_argument("--isolation", default="auto", choices=["auto", "both"],
                   help="Chromium pages: auto = COOP/COEP only for N > 1 threads; both = every count both ways")
    q.add_argument("--no-node", action="store_true", help="skip realm.wasm under Node")
    bench.set_defaults(fn=cmd_bench)

    from .hub_cli import register as register_hub
    register_hub(sub)  # pull, models
    from .server.cli import register as register_server
    register_server(sub)  # serve, api-key
    from .web import register as register_web
    register_web(sub)  # web: the local chat page

    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (RealmError, ValueError, OSError) as e:   # OSError: also the key store unreachable (db.StoreUnavailable)
        print(f"realm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
