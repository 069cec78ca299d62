"""`Realm`: the Python API. A Realm is one session on a shared, host-side model.

    from realm_web import Realm
    r = Realm.load()                      # the default model, or Realm.load("model.gguf")
    print(r.generate("The capital of France is", max_tokens=16, temperature=0))
    for piece in r.stream("Once upon a time", max_tokens=64):
        print(piece, end="", flush=True)
"""
from __future__ import annotations

from typing import Iterator, Sequence

from . import chat as chat_mod
from . import lora as lora_mod
from . import store
from .core_model import KV_CACHE_TYPES, CoreModel, Session, kv_cache_type
from .default_model import default_model_path
from .batching import Want, plan_step, served_last, step_rows
from .errors import ContextOverflowError, RealmError
from .generation import DECODE, Generation, GenerationStats, Vocab, advance
from . import tools as tools_mod
from .grammars import response_format_grammar, response_format_schema, schema_grammar
from .limits import DEFAULT_CTX, default_ctx  # noqa: F401  (DEFAULT_CTX: re-exported)
from .sampling import LLAMA_CPP, GenerationOptions, SamplerSettings, stop_list
from .speculative import make_speculator

_D = LLAMA_CPP   # the Python API's sampling defaults (llama.cpp's)


class Realm:
    """One session of a GGUF model; weights are shared with every other Realm of the same file."""

    def __init__(self, model: CoreModel, n_ctx: int | None = None, device: str = "cpu", speculative: str | None = None,
                 draft_model=None, draft_tokens: int = 8, threads: int | None = None, lora=None,
                 cache_type_k="f16", cache_type_v="f16") -> None:
        self.model = model
        self._adapters: list = []  # [(LoraAdapter, scale)], each acquired once by this Realm
        self.device = device
        self.n_ctx = int(n_ctx or default_ctx(model.info.n_ctx_train))
        self.speculator = None
        self._closed = True
        self._cache_types = (kv_cache_type(cache_type_k), kv_cache_type(cache_type_v))
        if device == "gpu":
            if speculative or draft_model:
                raise RealmError("speculative decoding runs on the CPU core (device='cpu'); the GPU path has no verify pass yet")
            if self._cache_types != (KV_CACHE_TYPES["f16"],) * 2:
                raise RealmError("a q8_0 KV cache runs on the CPU core (device='cpu'); the GPU plan keeps an f16 cache")
            from . import gpu  # the same session interface, on WebGPU (docs/GPU.md)
            self.session = gpu.open_gpu_session(model, self.n_ctx)
        else:
            self.session = Session(model, self.n_ctx, *self._cache_types)
        try:
            self.speculator = make_speculator(speculative, model, self.n_ctx, draft_model=draft_model,
                                              draft_tokens=draft_tokens, threads=threads)
            if lora:
                self.set_lora(lora)
        except BaseException:
            self._release_adapters(self._adapters)
            if self.speculator is not None:
                self.speculator.close()
            self.session.close()
            raise
        self.last_stats = GenerationStats()
        self._logprobs: int | None = None
        self._vocab = Vocab(model)
        self._closed = False

    # ------------------------------------------------------------- lifecycle
    @classmethod
    def load(cls, path=None, n_ctx: int | None = None, device: str = "cpu", threads: int | None = None,
             speculative: str | None = None, draft_model=None, draft_tokens: int = 8, lora=None,
             cache_type_k="f16", cache_type_v="f16") -> "Realm":
        """Open a GGUF (a path or a source; the default model when None) and start a session on it.

        device: "cpu" (realm.wasm), "gpu" (WebGPU through wgpu-py), or "auto" (a real
        GPU when there is one, else the CPU core). threads: CPU threads for the
        model (default: the CPUs available, at most 8, or REALM_THREADS); shared by
        every session of the model, so the last setting wins.
        speculative: "ngram" (prompt-lookup drafts) or "draft" (draft_model: a smaller
        GGUF with the same vocabulary); at most draft_tokens drafts per step. The text
        is the same as without (realm_web/speculative.py); last_stats.speculative says
        how many drafts were accepted.
        lora: LoRA adapters (llama.cpp's GGUF format) as [(path, scale), ...] (or paths, scale
        1): loaded once per model and process, shared, applied merge-free (see set_lora).
        cache_type_k, cache_type_v: the KV cache's types, 'f16' (default) or 'q8_0' (llama.cpp's
        -ctk / -ctv q8_0: about half the memory; CPU only)."""
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
            return cls(model, n_ctx, device=dev, speculative=speculative, draft_model=draft_model,
                       draft_tokens=draft_tokens, threads=threads, lora=lora,
                       cache_type_k=cache_type_k, cache_type_v=cache_type_v)
        except BaseException:
            store.release(model)
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.speculator is not None:
                self.speculator.close()
            self.session.close()
            self._release_adapters(self._adapters)
            self._adapters = []
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

    def _new_session(self):
        """Another session of this Realm's model on its device (batched generation)."""
        if self.device == "gpu":
            from . import gpu
            return gpu.open_gpu_session(self.model, self.n_ctx)
        return Session(self.model, self.n_ctx, *self._cache_types)

    # ------------------------------------------------------------------ LoRA
    def _acquire_adapters(self, spec) -> list:
        """[(path, scale) | path | (LoraAdapter, scale)] -> [(LoraAdapter, scale)], each acquired."""
        out = []
        try:
            for item in spec or []:
                path, scale = (item, 1.0) if isinstance(item, (str, bytes)) or not isinstance(item, (tuple, list)) else item
                scale = lora_mod.check_scale(scale)
                if isinstance(path, lora_mod.LoraAdapter):
                    out.append((lora_mod.acquire(self.model, path.path), scale))
                else:
                    out.append((lora_mod.acquire(self.model, path), scale))
        except BaseException:
            self._release_adapters(out)
            raise
        return out

    @staticmethod
    def _release_adapters(pairs) -> None:
        for a, _ in pairs:
            lora_mod.release(a)

    def set_lora(self, adapters) -> None:
        """Apply LoRA adapters to this session from its next generation: [(path, scale), ...]
        (a bare path means scale 1; [] removes them). output = W x + scale * (alpha / rank) * B (A x)
        on every adapted weight, as llama.cpp; scale 0 is the base model exactly. Files are
        validated against the model (architecture, shapes, rank) and refused with a clear error;
        the session then keeps its previous adapters."""
        new = self._acquire_adapters(adapters)
        try:
            self.session.set_lora(new)  # a CPU Session or a GpuSession (the core's LoRA plan)
        except BaseException:
            self._release_adapters(new)
            raise
        old, self._adapters = self._adapters, new
        self._release_adapters(old)

    @property
    def lora(self) -> list[tuple[str, float]]:
        """[(path, scale), ...] of the adapters this session applies."""
        return [(a.path, sc) for a, sc in self._adapters]

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
    def _prompt_ids(self, prompt: str | Sequence[int], add_special: bool, name: str = "the prompt") -> list[int]:
        """A prompt's ids (text is tokenized), refused when empty or with no room left to generate."""
        ids = list(prompt) if not isinstance(prompt, str) else self.tokenize(prompt, add_special, parse_special=True)
        if len(ids) == 0:
            raise RealmError(f"{name} is empty (no tokens)")
        if len(ids) >= self.n_ctx:
            raise ContextOverflowError(
                f"{name} has {len(ids)} tokens; the context holds {self.n_ctx} (leave room to generate)")
        return ids

    def _start(self, prompt: str | Sequence[int], max_tokens: int | None, stop, ignore_eos: bool, add_special: bool,
               text: bool, seed: int | None = None, logprobs: int | None = None, grammar=None,
               response_format=None, **sampling) -> Generation:
        """A Generation of `prompt` on this session, its sampler (and grammar) set and its cached
        prefix kept."""
        if self._closed:
            raise RealmError("session is closed (this Realm was closed)")
        if response_format is not None:
            rf_grammar = response_format_grammar(self.model, response_format)
            if rf_grammar is not None and grammar is not None:
                raise RealmError("give either grammar or a JSON response_format, not both")
            grammar = rf_grammar if rf_grammar is not None else grammar
        ids = self._prompt_ids(prompt, add_special)
        gen = Generation(self._vocab, ids, self.n_ctx, GenerationOptions(max_tokens, stop_list(stop), ignore_eos),
                         text=text)
        self.last_stats = gen.stats
        if self.speculator is not None:
            self.speculator.reset_stats()
            gen.stats.speculative = self.speculator.stats  # filled in as it runs
        self.session.set_sampler(SamplerSettings.of(_D, seed=seed, **sampling))
        self.session.set_logprobs(logprobs)   # (on the GPU, by the core's sampler from the whole row)
        self.session.set_grammar(grammar)     # None clears the last generation's
        self._logprobs = logprobs
        self.session.truncate(gen.reuse(self.session.tokens()))
        return gen

    def _advance(self, gen: Generation) -> str:
        """One unit of `gen` on this session; with logprobs, records the new token's (a verify
        pass samples several tokens at once, so those generations do not speculate)."""
        if self._logprobs is None:
            return advance(gen, self.session, speculator=self.speculator)
        before = gen.stats.generated_tokens
        out = advance(gen, self.session)
        if gen.stats.generated_tokens > before:
            lp = self.session.logprobs()
            gen.stats.logprobs.append((lp[0][0], lp[0][1], lp[1:]))
        return out

    def generate_tokens(self, prompt: str | Sequence[int], max_tokens: int = 128,
                        temperature: float = _D["temperature"], top_k: int = _D["top_k"], top_p: float = _D["top_p"],
                        min_p: float = _D["min_p"], repeat_penalty: float = _D["repeat_penalty"],
                        repeat_last_n: int = _D["repeat_last_n"], frequency_penalty: float = _D["frequency_penalty"],
                        presence_penalty: float = _D["presence_penalty"], seed: int | None = None,
                        add_special: bool = True, ignore_eos: bool = False,
                        logprobs: int | None = None, grammar=None, response_format=None) -> Iterator[int]:
        """Yield generated token ids; stats land in self.last_stats. logprobs: None, or k (0..20):
        last_stats.logprobs gets each token's (id, logprob, the k most likely [(id, logprob)]), the
        log-softmax of the logits the sampler starts from (after penalties, temperature 1).
        grammar: GBNF text (llama.cpp's syntax) every sampled token must follow, or None.
        response_format: OpenAI's ({"type": "json_object"} or {"type": "json_schema", "json_schema":
        {"name", "schema", "strict"}}): the output then always parses (and validates)."""
        gen = self._start(prompt, max_tokens, None, ignore_eos, add_special, text=False, seed=seed,
                          logprobs=logprobs, grammar=grammar, response_format=response_format,
                          temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                          repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n,
                          frequency_penalty=frequency_penalty, presence_penalty=presence_penalty)
        seen = 0
        try:
            while not gen.done:
                self._advance(gen)  # the whole prompt in one eval
                toks = gen.stats.tokens
                while seen < len(toks):  # a speculative step may take several
                    yield toks[seen]
                    seen += 1
        finally:
            gen.close()

    def stream(self, prompt: str | Sequence[int], max_tokens: int = 128, stop: Sequence[str] | str | None = None,
               ignore_eos: bool = False, add_special: bool = True, **sampling) -> Iterator[str]:
        """Yield text pieces as they are generated (whole UTF-8 characters only); sampling,
        logprobs and grammar: generate_tokens' settings."""
        gen = self._start(prompt, max_tokens, stop, ignore_eos, add_special, text=True, **sampling)
        try:
            while not gen.done:
                out = self._advance(gen)
                if out:
                    yield out
        finally:
            gen.close()

    def generate(self, prompt: str | Sequence[int], max_tokens: int = 128, **kw) -> str:
        """The whole completion as one string."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, **kw))

    # --------------------------------------------------------------- batches
    def stream_batch(self, prompts: Sequence, max_tokens: int = 128, stop: Sequence[str] | str | None = None,
                     ignore_eos: bool = False, add_special: bool = True, **sampling) -> Iterator[tuple[int, str]]:
        """Generate for several prompts at once, on sessions of their own (this Realm's session
        is untouched), all advanced by one batched forward pass per step: every weight is read
        once per step for all of them, and each prompt's output equals generating it alone.
        Yields (index, text piece) as pieces come. A prompt is a string, token ids, or a dict
        with "prompt" and its own overrides of the other arguments (max_tokens, stop, seed,
        temperature, ...). Stats per prompt land in self.last_batch_stats."""
        if self._closed:
            raise RealmError("session is closed (this Realm was closed)")
        shared = dict(max_tokens=max_tokens, stop=stop, ignore_eos=ignore_eos, add_special=add_special, **sampling)
        specs = [dict(shared, **p) if isinstance(p, dict) else dict(shared, prompt=p) for p in prompts]
        items: list[tuple[Generation, Session]] = []
        batch_adapters: list = []  # adapters acquired for single prompts ("lora" in a prompt dict)
        try:
            for i, sp in enumerate(specs):
                sp = dict(sp)
                prompt = sp.pop("prompt", None)
                if prompt is None:
                    raise RealmError(f"batch prompt {i} has no 'prompt'")
                ids = self._prompt_ids(prompt, sp.pop("add_special"), f"batch prompt {i}")
                opts = GenerationOptions(sp.pop("max_tokens"), stop_list(sp.pop("stop")), sp.pop("ignore_eos"))
                grammar = sp.pop("grammar", None)
                rf = sp.pop("response_format", None)
                if rf is not None:
                    grammar = response_format_grammar(self.model, rf) or grammar
                own = "lora" in sp
                adapters = self._acquire_adapters(sp.pop("lora")) if own else self._adapters
                settings = SamplerSettings.of(_D, **sp)
                session = None
                try:
                    session = self._new_session()
                    session.set_lora(adapters)
                except BaseException:
                    if session is not None:
                        session.close()
                    if own:
                        self._release_adapters(adapters)
                    raise
                if own:
                    batch_adapters.append(adapters)
                items.append((Generation(self._vocab, ids, self.n_ctx, opts), session))
                session.set_sampler(settings)
                if grammar is not None:
                    session.set_grammar(grammar)
            self.last_batch_stats = [g.stats for g, _ in items]
            budget = self.model.batch_max_tokens()
            order = list(range(len(items)))
            while order:
                wants = [Want(i, 0, items[i][0].phase == DECODE, len(items[i][0].ids) - items[i][0].pos)
                         for i in order]
                rows = plan_step(wants, budget, budget)
                texts = step_rows(self.model, [(items[i][0], items[i][1], n) for i, n in rows])
                order = served_last(order, [i for i, _ in rows], key=int)
                for (i, _), text in zip(rows, texts):
                    if text:
                        yield i, text
                order = [i for i in order if not items[i][0].done]
        finally:
            for g, s in items:
                g.close()
                s.close()
            for adapters in batch_adapters:
                self._release_adapters(adapters)

    def generate_batch(self, prompts: Sequence, max_tokens: int = 128, **kw) -> list[str]:
        """stream_batch's whole completions, one string per prompt, in order."""
        out = [""] * len(prompts)
        for i, piece in self.stream_batch(prompts, max_tokens=max_tokens, **kw):
            out[i] += piece
        return out

    # ------------------------------------------------------------------ chat
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            chat_template_kwargs: dict | None = None) -> str:
        """The prompt text of messages in the model's own template; chat_template_kwargs: more
        template variables (llama-server's field of that name), e.g. {"enable_thinking": False}."""
        return chat_mod.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               **chat_mod.template_args(self.model), **chat_mod.template_kwargs(chat_template_kwargs))

    def chat_stream(self, messages: list[dict], max_tokens: int = 256, chat_template_kwargs: dict | None = None,
                    **kw) -> Iterator[str]:
        ids = chat_mod.prompt_ids(self.model, self.apply_chat_template(messages, chat_template_kwargs=chat_template_kwargs))
        return self.stream(ids, max_tokens=max_tokens, **kw)

    def chat(self, messages: list[dict], max_tokens: int = 256, **kw) -> str:
        return "".join(self.chat_stream(messages, max_tokens=max_tokens, **kw))

    def chat_message(self, messages: list[dict], max_tokens: int = 256, tools=None, tool_choice=None,
                     response_format=None, **kw) -> dict:
        """The assistant's reply as OpenAI's message ({"role", "content", "tool_calls"?}), with
        OpenAI's tools + tool_choice (realm_web/tools.py: the model answers in llama.cpp's generic
        JSON format, constrained so every call names a tool and its arguments validate) and
        response_format; messages may hold assistant tool_calls and tool results."""
        tool_list, choice = tools_mod.parse_tools(tools, tool_choice)
        if choice is None:
            return {"role": "assistant", "content": self.chat(messages, max_tokens, response_format=response_format, **kw)}
        kind, schema = response_format_schema(response_format)
        if kind != "text" and choice != "auto":
            raise RealmError("response_format goes with tool_choice 'auto' (it shapes the reply when no tool is called)")
        tools_mod.check_schemas(tool_list, lambda sch, param: schema_grammar(self.model, sch, param))
        response = {"type": "object"} if kind == "json_object" else schema
        args = chat_mod.template_args(self.model)
        fmt = tools_mod.tool_format(args["template"])
        grammar = tools_mod.format_grammar(self.model, fmt, tool_list, choice, response)
        msgs, extra = tools_mod.prompt_messages(messages, tool_list, choice, args["template"])
        text = chat_mod.render(messages=msgs, add_generation_prompt=True, **args, **extra)
        ids = chat_mod.prompt_ids(self.model, text)
        out = self.generate(ids, max_tokens=max_tokens, grammar=grammar, **kw)
        content, calls = tools_mod.parse_answer(out, fmt)
        msg = {"role": "assistant", "content": content}
        if calls:
            msg["tool_calls"] = calls
        return msg
