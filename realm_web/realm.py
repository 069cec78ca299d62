"""`Realm`: the Python API. A Realm is one session on a shared, host-side model.

    from realm_web import Realm
    r = Realm.load()                      # the default model, or Realm.load("model.gguf")
    print(r.generate("The capital of France is", max_tokens=16, temperature=0))
    for piece in r.stream("Once upon a time", max_tokens=64):
        print(piece, end="", flush=True)
"""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from . import chat as chat_mod
from . import store
from .core_model import CoreModel, SamplerSettings, Session
from .default_model import default_model_path
from .errors import ContextOverflowError, RealmError
from .stops import StopFilter

DEFAULT_CTX = 4096


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    cached_tokens: int = 0       # prompt tokens reused from the session's cache
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0
    finish_reason: str = ""      # "stop" (EOG or a stop string) or "length"
    tokens: list[int] = field(default_factory=list)

    @property
    def prompt_tps(self) -> float:
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generate_tps(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0


class Realm:
    """One session of a GGUF model; weights are shared with every other Realm of the same file."""

    def __init__(self, model: CoreModel, n_ctx: int | None = None, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        train = model.info.n_ctx_train or DEFAULT_CTX
        self.n_ctx = int(n_ctx or min(DEFAULT_CTX, train))
        if device == "gpu":
            from . import gpu  # the same session interface, on WebGPU (docs/GPU.md)
            self.session = gpu.open_gpu_session(model, self.n_ctx)
        else:
            self.session = Session(model, self.n_ctx)
        self.last_stats = GenerationStats()
        self._closed = False

    # ------------------------------------------------------------- lifecycle
    @classmethod
    def load(cls, path=None, n_ctx: int | None = None, device: str = "cpu", threads: int | None = None) -> "Realm":
        """Open a GGUF (a path or a source; the default model when None) and start a session on it.

        device: "cpu" (realm.wasm), "gpu" (WebGPU through wgpu-py), or "auto" (a real
        GPU when there is one, else the CPU core). threads: CPU threads for the
        model (default: the CPUs available, at most 8, or REALM_THREADS); shared by
        every session of the model, so the last setting wins."""
        if device not in ("cpu", "gpu", "auto"):
            raise RealmError(f"unknown device {device!r} (use 'cpu', 'gpu' or 'auto')")
        src = default_model_path() if path is None else path
        dev = "cpu"
        if device != "cpu":
            from . import gpu
            dev = gpu.resolve_device(device)
        if dev == "gpu":
            from . import gpu
            model = gpu.acquire_model(src)  # vocab-only on the CPU: the weights live on the GPU
        else:
            model = store.acquire(src, threads=threads)
        try:
            return cls(model, n_ctx, device=dev)
        except BaseException:
            store.release(model)
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.session.close()
            store.release(self.model)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---------------------------------------------------------------- tokens
    @property
    def info(self):
        return self.model.info

    def metadata(self) -> dict:
        return self.model.metadata()

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        return self.model.detokenize(ids, special=special).decode("utf-8", "replace")

    # ------------------------------------------------------------ generation
    def _prepare(self, ids: list[int], stats: GenerationStats) -> None:
        """Bring the session's cache to `ids`, reusing the longest common prefix."""
        if len(ids) == 0:
            raise RealmError("the prompt is empty (no tokens)")
        if len(ids) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(ids)} tokens; the context holds {self.n_ctx} (leave room to generate)")
        have = self.session.tokens()
        n = 0
        for a, b in zip(have, ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)  # re-evaluate at least one token to get fresh logits
        self.session.truncate(n)
        stats.cached_tokens = n
        t0 = time.perf_counter()
        self.session.eval(ids[n:])
        stats.prompt_seconds = time.perf_counter() - t0

    def generate_tokens(self, prompt: str | Sequence[int], max_tokens: int = 128, temperature: float = 0.8,
                        top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                        repeat_last_n: int = 64, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                        seed: int | None = None, add_special: bool = True,
                        ignore_eos: bool = False) -> Iterator[int]:
        """Yield generated token ids; stats land in self.last_stats."""
        if max_tokens is None or max_tokens < 0:
            max_tokens = self.n_ctx
        ids = list(prompt) if not isinstance(prompt, str) else self.tokenize(prompt, add_special, parse_special=True)
        stats = self.last_stats = GenerationStats(prompt_tokens=len(ids))
        self.session.set_sampler(SamplerSettings(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty,
            repeat_last_n=repeat_last_n, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            seed=int(time.time_ns()) if seed is None or seed < 0 else int(seed)))
        self._prepare(ids, stats)
        t0 = time.perf_counter()
        try:
            tok = self.session.sample()
            while True:
                if not ignore_eos and self.model.is_eog(tok):
                    stats.finish_reason = "stop"
                    return
                if stats.generated_tokens >= max_tokens:
                    stats.finish_reason = "length"
                    return
                stats.generated_tokens += 1
                stats.tokens.append(tok)
                yield tok
                if self.session.n_past >= self.n_ctx:  # no room to evaluate it
                    stats.finish_reason = "length"
                    return
                tok = self.session.step(tok)
        finally:
            stats.generate_seconds = time.perf_counter() - t0

    def stream(self, prompt: str | Sequence[int], max_tokens: int = 128, stop: Sequence[str] | str | None = None,
               **sampling) -> Iterator[str]:
        """Yield text pieces as they are generated (whole UTF-8 characters only)."""
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        filt = StopFilter(stops)
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        gen = self.generate_tokens(prompt, max_tokens=max_tokens, **sampling)
        try:
            for tok in gen:
                text = dec.decode(self.model.piece(tok, special=False))
                out = filt.push(text) if stops else text
                if out:
                    yield out
                if filt.hit:
                    self.last_stats.finish_reason = "stop"
                    return
            tail = filt.push(dec.decode(b"", final=True)) + filt.flush() if stops else dec.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            gen.close()

    def generate(self, prompt: str | Sequence[int], max_tokens: int = 128, **kw) -> str:
        """The whole completion as one string."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, **kw))

    # ------------------------------------------------------------------ chat
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        meta = self.model.metadata()
        tokens = meta.get("tokenizer.ggml.tokens") or []

        def tok_text(key):
            i = meta.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""
        return chat_mod.render(meta.get("tokenizer.chat_template"), messages, add_generation_prompt,
                               bos_token=tok_text("tokenizer.ggml.bos_token_id"),
                               eos_token=tok_text("tokenizer.ggml.eos_token_id"))

    def chat_stream(self, messages: list[dict], max_tokens: int = 256, **kw) -> Iterator[str]:
        prompt = self.apply_chat_template(messages)
        # the template already wrote any BOS it wants
        ids = self.tokenize(prompt, add_special=False, parse_special=True)
        if self.info.add_bos and self.info.bos >= 0 and (not ids or ids[0] != self.info.bos):
            ids = [self.info.bos] + ids
        return self.stream(ids, max_tokens=max_tokens, **kw)

    def chat(self, messages: list[dict], max_tokens: int = 256, **kw) -> str:
        return "".join(self.chat_stream(messages, max_tokens=max_tokens, **kw))
