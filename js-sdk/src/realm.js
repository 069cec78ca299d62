// `Realm`: the public API. A Realm is one session (KV cache) on a shared model;
// every Realm of the same source shares one copy of the weights (store.js).
// The JS twin of realm_web/realm.py.
import { acquireLora, releaseLora, normalizeSpec } from './lora.js';
import { RealmError, ModelFormatError } from './errors.js';
import * as store from './store.js';
import { KV_CACHE_TYPES, Session, kvCacheType } from './session.js';
import { DEFAULT_CTX, EVAL_BATCH } from './abi.js';
import { normalizeOptions } from './options.js';
import { abortReason, throwIfAborted } from './abort.js';
import { samplerSettings, LLAMA_CPP_SAMPLING } from './sampling.js';
import { Generation, drive, collectBatch, newStats, promptIds, chatPromptIds, commonPrefix } from './generation.js';
import { createChatCompletion } from './openai.js';
import { renderChat } from './chat.js';
import { modelCache } from './cache.js';
import { resolveDevice, gpuFailedNote } from './gpu.js';

// A generation's `logprobs` option on its session (CPU or WebGPU): null/undefined/false off
// (also on a session kept from an earlier call), true the sampled token's alone, n (0..20)
// the top n besides. True when they are on (drive() then reads them with every token).
function useLogprobs(session, n) {
  const off = n == null || n === false || n === -1;
  session.setLogprobs(off ? -1 : n === true ? 0 : n);
  return !off;
}

// A generation's `grammar` option (GBNF text) on its session; none clears a kept session's.
function useGrammar(session, text) {
  session.setGrammar(text ?? null);
}

function baseName(name) {
  const s = String(name).split(/[?#]/)[0];
  return s.slice(s.lastIndexOf('/') + 1) || String(name);
}

export class Realm {
  /**
   * Load a GGUF model and open a session on it.
   * source: URL, File/Blob, ArrayBuffer/Uint8Array, or (Node) a file path.
   * options: { device: 'auto'|'webgpu'|'cpu', onProgress({loaded,total}), signal, nCtx,
   *            cache: true|false|'opfs'|'cache-api', worker: boolean, id,
   *            threads: CPU threads for the model (default: the CPUs, at most 8; 1 where
   *            the page is not cross-origin isolated). Per model: every Realm of it shares them.
   *            simd: 'auto' (relaxed SIMD where the engine has it) | 'relaxed' | 'simd128',
   *            lora: LoRA adapters (llama.cpp GGUF) as [[source, scale], ...] (see setLora),
   *            wasm: 'auto' (Memory64 where the engine has it, else the wasm32 build: models
   *            up to 4 GiB, one thread) | 'wasm64' | 'wasm32'. Per model, like threads.
   *            cacheTypeK, cacheTypeV: the KV cache's types, 'f16' (default) or 'q8_0' (llama.cpp's
   *            -ctk / -ctv q8_0: about half the memory; the CPU core only). }
   */
  static async load(source, options = {}) {
    if (options.worker) {
      const { RealmWorker } = await import('./worker-client.js');
      return RealmWorker.load(source, options);
    }
    if (source == null) throw new RealmError('Realm.load needs a model source (URL, File/Blob, ArrayBuffer or path)');
    let dev = await resolveDevice(options.device);
    const acquireOpts = {
      onProgress: options.onProgress, signal: options.signal, cache: options.cache, identity: options.identity,
      fetchOptions: options.fetchOptions, threads: options.threads, simd: options.simd, wasm: options.wasm,
    };
    let model;
    if (dev.dev) {
      try {
        model = await store.acquire(source, { ...acquireOpts, gpuDevice: dev.dev });
      } catch (e) {
        if ((options.signal && options.signal.aborted) || e instanceof ModelFormatError) throw e;
        dev = { device: 'cpu', dev: null, note: gpuFailedNote(e) };
      }
    }
    if (!model) model = await store.acquire(source, acquireOpts);
    let session;
    try {
      const nCtx = Number(options.nCtx ?? options.n_ctx ?? Math.min(DEFAULT_CTX, model.info.n_ctx_train || DEFAULT_CTX));
      const cacheTypes = { k: options.cacheTypeK, v: options.cacheTypeV };
      if (model.gpu) {
        if (kvCacheType(cacheTypes.k) !== KV_CACHE_TYPES.f16 || kvCacheType(cacheTypes.v) !== KV_CACHE_TYPES.f16) {
          throw new RealmError("a q8_0 KV cache runs on the CPU core (device: 'cpu'); WebGPU keeps an f16 cache");
        }
        const { GpuSession } = await import('./webgpu.js');
        session = await GpuSession.create(model, nCtx);
      } else {
        session = new Session(model, nCtx, cacheTypes);
      }
      const realm = new Realm(model, session, { ...options, device: dev.device, deviceNote: dev.note });
      if (options.lora && options.lora.length) {
        try { await realm.setLora(options.lora); } catch (e) { await realm.unload(); throw e; }
      }
      return realm;
    } catch (e) {
      if (session && session.handle) { session.close(); store.release(model); throw e; }
      if (session) throw e; // (unload released the model)
      store.release(model);
      throw e;
    }
  }

  constructor(model, session, options = {}) {
    this.model = model;
    this.session = session;
    this.nCtx = session.nCtx;
    this.device = options.device || 'cpu';
    this.deviceNote = options.deviceNote || null;
    this.id = options.id || baseName(model.name);
    this.source = model.name;
    this.fromCache = model.fromCache;
    this.lastStats = newStats();
    this.lastBatchStats = [];
    this._batchSessions = []; // sessions of batch prompts past the first (streamBatch), kept until unload
    this._closed = false;
    this._tail = Promise.resolve();
    const self = this;
    /** OpenAI-shaped chat: realm.chat.completions.create({messages, stream, ...}). */
    this.chat = { completions: { create: (req) => self._chatCreate(req) } };
  }

  // ------------------------------------------------------------- lifecycle
  /** Free this session; the model's weights go when the last Realm using them unloads. */
  async unload() {
    if (this._closed) return;
    this._closed = true;
    for (const [e] of this._lora || []) releaseLora(e);
    this._lora = [];
    // Safe at once: wasm calls are synchronous, so no call is in flight; a generation
    // suspended between tokens finds the Realm closed when it resumes and ends with an error.
    this.session.close();
    for (const s of this._batchSessions) s.close();
    this._batchSessions = [];
    store.release(this.model);
  }

  get closed() { return this._closed; }

  /**
   * Apply LoRA adapters from the next generation: [[source, scale], ...] (a path, URL, Blob or
   * bytes; a bare source means scale 1; [] removes them). Merge-free, as llama.cpp:
   * W x + scale * (alpha / rank) * B (A x); scale 0 is the base model exactly. Each file is
   * loaded once per model and shared; a file that does not fit the model is refused with the
   * core's message, and the session keeps its previous adapters.
   */
  async setLora(spec) {
    this._checkOpen();
    const want = normalizeSpec(spec);
    const got = [];
    try {
      for (const [src, sc] of want) got.push([await acquireLora(this.model, src), sc]);
      await this.session.setLora(got); // a Session, or a GpuSession (the core's LoRA plan)
    } catch (e) {
      for (const [en] of got) releaseLora(en);
      throw e;
    }
    const old = this._lora || [];
    this._lora = got;
    for (const [en] of old) releaseLora(en);
  }

  /** [[name, scale], ...] of the adapters this session applies. */
  get lora() { return (this._lora || []).map(([e, sc]) => [e.name, sc]); }

  _checkOpen() { if (this._closed) throw new RealmError('this Realm has been unloaded'); }

  // One call at a time per session; waits in line (or gives up when aborted).
  async _lock(signal) {
    let release;
    const mine = new Promise((r) => { release = r; });
    const prev = this._tail;
    this._tail = prev.then(() => mine);
    if (!signal) { await prev; return release; }
    let onAbort;
    try {
      await Promise.race([prev, new Promise((_, rej) => {
        onAbort = () => rej(abortReason(signal));
        if (signal.aborted) onAbort(); else signal.addEventListener('abort', onAbort, { once: true });
      })]);
    } catch (e) {
      prev.then(release); // keep the line moving once our turn comes
      throw e;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    return release;
  }

  // ---------------------------------------------------------------- tokens
  get info() { return this.model.info; }

  /** CPU threads running this model (1 on WebGPU, or where wasm threads are unavailable). */
  get threads() { return this.model.core && !this.model.gpu ? this.model.core.threads : 1; }

  /** Why this model runs on one thread although more were asked for (else null). */
  get threadsNote() { return (this.model.core && this.model.core.threadsNote) || null; }

  /** The CPU kernels' instruction set: 'relaxed' (relaxed SIMD) or 'simd128'. */
  get simd() { return (this.model.core && this.model.core.simd) || 'simd128'; }

  /** Which build of the core runs: {arch: 'wasm64' (Memory64) | 'wasm32', file: e.g. 'realm32.wasm'}. */
  get wasm() {
    const c = this.model.core;
    return { arch: (c && c.arch) || 'wasm64', file: (c && c.file) || null };
  }

  metadata() { this._checkOpen(); return this.model.metadata(); }

  /** Token ids of text. opts: {addSpecial = true, parseSpecial = false} (or a boolean addSpecial). */
  tokenize(text, opts = {}) {
    this._checkOpen();
    if (typeof opts === 'boolean') opts = { addSpecial: opts };
    const o = normalizeOptions(opts);
    return this.model.tokenize(text, o.add_special ?? true, o.parseSpecial ?? o.parse_special ?? false);
  }

  /** Text of token ids. opts: {special = false}. */
  detokenize(ids, opts = {}) {
    this._checkOpen();
    return new TextDecoder('utf-8').decode(this.model.detokenize(ids, !!opts.special));
  }

  // ------------------------------------------------------------ generation
  // One driver for generateTokens, stream and streamBatch: the Generation (generation.js)
  // says what to evaluate and what each sampled token means; drive() runs the one loop
  // (advance() for one session, advanceBatch() for several), with abort checks between units.
  async *_run(prompt, o, text) {
    const signal = o.signal;
    throwIfAborted(signal);
    this._checkOpen();
    const release = await this._lock(signal);
    const stats = o.stats || newStats();
    this.lastStats = stats;
    let g = null;
    try {
      this._checkOpen();
      const ids = promptIds(this.model, prompt, o.add_special ?? true);
      g = new Generation(this.model, ids, this.nCtx, { ...o, text, stats });
      const s = this.session;
      s.setSampler(samplerSettings(o, LLAMA_CPP_SAMPLING));
      const logprobs = useLogprobs(s, o.logprobs);
      useGrammar(s, o.grammar);
      s.truncate(g.reuse(s.tokens()));
      for await (const ev of drive([{ g, session: s, logprobs }], { maxChunk: EVAL_BATCH, signal, check: () => this._checkOpen() })) {
        if (ev.done) { if (ev.error) throw ev.error; } else yield ev;
      }
    } finally {
      if (g) g.close();
      release();
    }
  }

  /**
   * Several generations at once, each in its own session of this model, advanced together:
   * on the CPU every step is one forward pass for all of them (continuous batching: each
   * weight read once per step; each prompt's tokens are the ones it gets alone, bit for
   * bit, greedy or seeded). prompts: strings, token-id arrays, or objects {prompt} or
   * {messages} (rendered with the chat template) with per-prompt options (max_tokens,
   * stop, seed, temperature, ..., signal: aborts that prompt only). opts: the options every
   * prompt starts from, and signal (aborts all). An async iterator of events:
   *   {index, token, text}                                 a prompt produced (text may be '';
   *        with the prompt's option logprobs: n (0..20, or true = 0), also logprobs:
   *        [[id, logprob], ...] of that token's sample: the sampled token, then the top n)
   *   {index, done: true, finish_reason, stats, error}     a prompt ended (error: null, or
   *        what ended it alone: its own abort, a bad prompt, a core error about its session)
   * The others go on when one ends. Stats of every prompt: realm.lastBatchStats.
   */
  async *streamBatch(prompts, opts = {}) {
    yield* this._runBatch(prompts, opts, true);
  }

  /**
   * streamBatch's texts: resolves to one string per prompt. If a prompt ended with an error
   * (its own signal, a bad prompt) the others still run to their ends, then this rejects
   * with the first such error; error.index names the prompt and error.results holds every
   * prompt's {text, finish_reason, stats, error}.
   */
  async generateBatch(prompts, opts = {}) {
    return collectBatch(this.streamBatch(prompts, opts), prompts.length);
  }

  async *_runBatch(prompts, opts, text) {
    if (!Array.isArray(prompts)) throw new RealmError('streamBatch: prompts is an array');
    const base = normalizeOptions(opts);
    const signal = base.signal;
    delete base.signal;
    delete base.stats;
    throwIfAborted(signal);
    this._checkOpen();
    const release = await this._lock(signal);
    const streams = [];
    try {
      this._checkOpen();
      const items = [];
      for (const p of prompts) {
        const isObj = p && typeof p === 'object' && !Array.isArray(p) && !ArrayBuffer.isView(p) && typeof p[Symbol.iterator] !== 'function';
        const o = { ...base, ...(isObj ? normalizeOptions(p) : {}) };
        const item = { o, signal: o.signal || null, ids: null, error: null };
        delete o.signal;
        try {
          if (isObj && p.messages) item.ids = await this.chatIds(p.messages, p);
          else item.ids = promptIds(this.model, isObj ? p.prompt : p, o.add_special ?? true);
        } catch (e) {
          item.error = e;
        }
        items.push(item);
      }
      const sessions = await this._sessionsFor(items);
      this.lastBatchStats = [];
      for (let i = 0; i < items.length; i++) {
        const { o, ids, signal: own } = items[i];
        const stats = newStats();
        this.lastBatchStats.push(stats);
        let { error } = items[i];
        let g = null;
        let logprobs = false;
        const session = sessions[i];
        if (!error) {
          try {
            await session.setLora(this._lora || []); // the Realm's adapters on every batch session
            g = new Generation(this.model, ids, this.nCtx, { ...o, text, stats });
            session.setSampler(samplerSettings(o, LLAMA_CPP_SAMPLING));
            logprobs = useLogprobs(session, o.logprobs);
            useGrammar(session, o.grammar);
            session.truncate(g.reuse(session.tokens()));
          } catch (e) {
            error = e;
          }
        }
        if (error && typeof error === 'object') error.index = i;
        streams.push({ g, session, signal: own, error, stats, logprobs });
      }
      const model = this.model.gpu ? null : this.model; // GPU sessions: one after another
      for await (const ev of drive(streams, { model, maxChunk: EVAL_BATCH, signal, check: () => this._checkOpen() })) {
        const e = ev.done ? ev.error : null;
        if (e && typeof e === 'object') {
          // a core error about its session: "batch session k of n" counts the sessions of that step
          if (e.sessionIndex != null && e.index === undefined && typeof e.message === 'string') e.message = `prompt ${ev.index}: ${e.message}`;
          try { e.index = ev.index; } catch { /* a frozen abort reason */ }
        }
        yield ev;
      }
    } finally {
      for (const s of streams) if (s.g) s.g.close();
      release();
    }
  }

  // Sessions for a batch's prompts: this Realm's own and the ones kept from earlier
  // batches (more made as needed), each prompt given the free one holding the longest
  // prefix of it (prefix reuse across calls). A prompt with an error gets a session too.
  async _sessionsFor(items) {
    const need = items.length - 1 - this._batchSessions.length;
    for (let k = 0; k < need; k++) {
      if (this.model.gpu) {
        const { GpuSession } = await import('./webgpu.js');
        this._batchSessions.push(await GpuSession.create(this.model, this.nCtx));
      } else {
        const [k, v] = this.session.cacheTypes;   // the same cache types as this Realm's own session
        this._batchSessions.push(new Session(this.model, this.nCtx, { k, v }));
      }
    }
    const free = [this.session, ...this._batchSessions];
    const cached = free.map((s) => s.tokens());
    const out = [];
    for (const it of items) {
      let best = 0;
      for (let k = 1; k < free.length && it.ids; k++) {
        if (commonPrefix(cached[k], it.ids) > commonPrefix(cached[best], it.ids)) best = k;
      }
      out.push(free[best]);
      free.splice(best, 1);
      cached.splice(best, 1);
    }
    return out;
  }

  /**
   * Generated token ids, one at a time (async iterator). Stats land in realm.lastStats
   * (or opts.stats). Every knob of generate() applies except stop.
   */
  async *generateTokens(prompt, opts = {}) {
    for await (const r of this._run(prompt, normalizeOptions(opts), false)) {
      if (r.token != null) yield r.token;
    }
  }

  /** Text pieces as they are generated (whole UTF-8 characters only); async iterator. */
  async *stream(prompt, opts = {}) {
    for await (const r of this._run(prompt, normalizeOptions(opts), true)) {
      if (r.text) yield r.text;
    }
  }

  /** The whole completion as one string. opts: max_tokens (128), temperature (0.8), top_k (40),
   * top_p (0.95), min_p (0.05), repeat_penalty (1), repeat_last_n (64), frequency_penalty,
   * presence_penalty, seed, stop, signal, add_special, ignore_eos (camelCase spellings work
   * too). Defaults: sampling.js LLAMA_CPP_SAMPLING. */
  async generate(prompt, opts = {}) {
    let out = '';
    for await (const piece of this.stream(prompt, opts)) out += piece;
    return out;
  }

  // ------------------------------------------------------------------ chat
  /** The prompt text of messages under the model's chat template (tokenizer.chat_template). */
  async applyChatTemplate(messages, { addGenerationPrompt = true, chatTemplate, extra } = {}) {
    this._checkOpen();
    const m = this.model;
    return renderChat(chatTemplate ?? m.meta('tokenizer.chat_template'), messages, {
      addGenerationPrompt,
      bosToken: m.tokenText(m.meta('tokenizer.ggml.bos_token_id')),
      eosToken: m.tokenText(m.meta('tokenizer.ggml.eos_token_id')),
      extra,
    });
  }

  /** Prompt ids of a chat: the template already wrote any BOS it wants (generation.js chatPromptIds). */
  async chatIds(messages, opts = {}) {
    const text = await this.applyChatTemplate(messages, opts);
    return chatPromptIds(this.model, text);
  }

  /** OpenAI's chat.completions.create, with OpenAI's sampling defaults (openai.js). */
  _chatCreate(req = {}) { return createChatCompletion(this, req); }

  // ---------------------------------------------------------------- static
  /** The model cache (models kept from URLs): list(), has(url), delete(url), clear(), backend(). */
  static get cache() { return modelCache; }

  /** [{name, key, refs, memoryBytes}] of the models this JS realm holds. */
  static loadedModels() { return store.loadedModels(); }

  /** Bytes of wasm memory held by every loaded model in this JS realm. */
  static memoryBytes() { return store.memoryBytes(); }
}
