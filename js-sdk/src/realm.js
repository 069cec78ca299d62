// `Realm`: the public API. A Realm is one session (KV cache) on a shared model;
// every Realm of the same source shares one copy of the weights (store.js).
// The JS twin of realm_web/realm.py.
import { RealmError, ContextOverflowError, ModelFormatError } from './core.js';
import * as store from './store.js';
import { Session, SAMPLER_DEFAULTS, EVAL_BATCH } from './session.js';
import { renderChat, completionId, usageOf, requestToOptions } from './chat.js';
import { modelCache } from './cache.js';
import { resolveDevice, gpuFailedNote } from './gpu.js';

export const DEFAULT_CTX = 4096;
const PROMPT_CHUNK = EVAL_BATCH; // prompt tokens per eval call (the core's batch): abort checks between chunks

const CAMEL = {
  maxTokens: 'max_tokens', topK: 'top_k', topP: 'top_p', minP: 'min_p', repeatPenalty: 'repeat_penalty',
  repeatLastN: 'repeat_last_n', frequencyPenalty: 'frequency_penalty', presencePenalty: 'presence_penalty',
  addSpecial: 'add_special', ignoreEos: 'ignore_eos', maxCompletionTokens: 'max_completion_tokens',
};

/** Generation options with camelCase spellings folded into snake_case. */
export function normalizeOptions(opts = {}) {
  const o = { ...opts };
  for (const [camel, snake] of Object.entries(CAMEL)) {
    if (o[camel] !== undefined && o[snake] === undefined) o[snake] = o[camel];
    delete o[camel];
  }
  return o;
}

function abortReason(signal) {
  return signal.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}
function throwIfAborted(signal) { if (signal && signal.aborted) throw abortReason(signal); }

/** Let timers, input and messages (an abort from another thread) run between tokens. */
export const yieldToEventLoop = (() => {
  if (typeof setImmediate === 'function') return () => new Promise((r) => setImmediate(r));
  if (typeof MessageChannel === 'function') {
    const ch = new MessageChannel();
    const q = [];
    ch.port1.onmessage = () => { const r = q.shift(); if (r) r(); };
    return () => new Promise((r) => { q.push(r); ch.port2.postMessage(0); });
  }
  return () => new Promise((r) => setTimeout(r, 0));
})();

/** Streams text while holding back any tail that could still become a stop string. */
export class StopFilter {
  constructor(stops) { this.stops = stops.filter((s) => s); this.buf = ''; this.hit = false; }

  push(text) {
    this.buf += text;
    let at = -1;
    for (const s of this.stops) {
      const i = this.buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.hit = true;
      const out = this.buf.slice(0, at);
      this.buf = '';
      return out;
    }
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.buf.length); k > 0; k--) {
        if (this.buf.endsWith(s.slice(0, k))) { keep = Math.max(keep, k); break; }
      }
    }
    const out = this.buf.slice(0, this.buf.length - keep);
    this.buf = this.buf.slice(this.buf.length - keep);
    return out;
  }

  flush() { const out = this.buf; this.buf = ''; return out; }
}

function newStats(promptTokens = 0) {
  return {
    prompt_tokens: promptTokens, cached_tokens: 0, generated_tokens: 0, prompt_seconds: 0, generate_seconds: 0,
    finish_reason: '', tokens: [],
    get prompt_tps() { const n = this.prompt_tokens - this.cached_tokens; return this.prompt_seconds > 0 ? n / this.prompt_seconds : 0; },
    get generate_tps() { return this.generate_seconds > 0 ? this.generated_tokens / this.generate_seconds : 0; },
  };
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

function randomSeed() {
  if (globalThis.crypto && globalThis.crypto.getRandomValues) {
    const a = new Uint32Array(2);
    globalThis.crypto.getRandomValues(a);
    return (BigInt(a[0]) << 32n) | BigInt(a[1]);
  }
  return BigInt(Math.floor(Math.random() * 2 ** 53));
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
   *            simd: 'auto' (relaxed SIMD where the engine has it) | 'relaxed' | 'simd128'. }
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
      fetchOptions: options.fetchOptions, threads: options.threads, simd: options.simd,
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
      if (model.gpu) {
        const { GpuSession } = await import('./webgpu.js');
        session = await GpuSession.create(model, nCtx);
      } else {
        session = new Session(model, nCtx);
      }
      return new Realm(model, session, { ...options, device: dev.device, deviceNote: dev.note });
    } catch (e) {
      if (session) session.close();
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
    // Safe at once: wasm calls are synchronous, so no call is in flight; a generation
    // suspended between tokens finds the Realm closed when it resumes and ends with an error.
    this.session.close();
    store.release(this.model);
  }

  get closed() { return this._closed; }

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
  async _prepare(ids, stats, signal) {
    if (ids.length === 0) throw new RealmError('the prompt is empty (no tokens)');
    if (ids.length >= this.nCtx) {
      throw new ContextOverflowError(`the prompt has ${ids.length} tokens; the context holds ${this.nCtx} (leave room to generate)`);
    }
    const have = this.session.tokens();
    let n = 0;
    while (n < have.length && n < ids.length && have[n] === ids[n]) n++;
    n = Math.min(n, ids.length - 1); // re-evaluate at least one token to get fresh logits
    this.session.truncate(n);
    stats.cached_tokens = n;
    const t0 = now();
    for (let i = n; i < ids.length; i += PROMPT_CHUNK) {
      if (i > n) {
        await yieldToEventLoop();
        throwIfAborted(signal);
        this._checkOpen();
      }
      await this.session.eval(ids.slice(i, i + PROMPT_CHUNK));
    }
    if (this.session.sync) await this.session.sync(); // GPU: the prompt's work is done, not just submitted
    stats.prompt_seconds = now() - t0;
  }

  _promptIds(prompt, o) {
    if (typeof prompt === 'string') return this.model.tokenize(prompt, o.add_special ?? true, true);
    if (prompt && typeof prompt[Symbol.iterator] === 'function') return Array.from(prompt, (x) => Number(x));
    throw new RealmError('a prompt is a string or an array of token ids');
  }

  /**
   * Generated token ids, one at a time (async iterator). Stats land in realm.lastStats
   * (or opts.stats). Every knob of generate() applies except stop.
   */
  async *generateTokens(prompt, opts = {}) {
    const o = normalizeOptions(opts);
    const signal = o.signal;
    throwIfAborted(signal);
    this._checkOpen();
    const release = await this._lock(signal);
    const stats = o.stats || newStats();
    this.lastStats = stats;
    let t0 = now();
    try {
      this._checkOpen();
      const ids = this._promptIds(prompt, o);
      stats.prompt_tokens = ids.length;
      let max = o.max_tokens ?? 128;
      if (max == null || max < 0) max = this.nCtx;
      let seed = o.seed;
      if (seed == null || (typeof seed === 'number' && seed < 0) || (typeof seed === 'bigint' && seed < 0n)) seed = randomSeed();
      const s = {};
      for (const k of Object.keys(SAMPLER_DEFAULTS)) s[k] = o[k] ?? SAMPLER_DEFAULTS[k];
      s.seed = seed;
      this.session.setSampler(s);
      await this._prepare(ids, stats, signal);
      t0 = now();
      let tok = await this.session.sample();
      for (;;) {
        if (!o.ignore_eos && this.model.isEog(tok)) { stats.finish_reason = 'stop'; return; }
        if (stats.generated_tokens >= max) { stats.finish_reason = 'length'; return; }
        stats.generated_tokens++;
        stats.tokens.push(tok);
        yield tok;
        if (this.session.nPast >= this.nCtx) { stats.finish_reason = 'length'; return; } // no room to evaluate it
        await yieldToEventLoop();
        throwIfAborted(signal);
        this._checkOpen();
        tok = await this.session.step(tok);
      }
    } finally {
      stats.generate_seconds = now() - t0;
      release();
    }
  }

  /** Text pieces as they are generated (whole UTF-8 characters only); async iterator. */
  async *stream(prompt, opts = {}) {
    const o = normalizeOptions(opts);
    const stops = typeof o.stop === 'string' ? [o.stop] : Array.from(o.stop || []);
    const filt = new StopFilter(stops);
    const dec = new TextDecoder('utf-8');
    const stats = o.stats || newStats();
    const gen = this.generateTokens(prompt, { ...o, stats });
    try {
      for await (const tok of gen) {
        const text = dec.decode(this.model.piece(tok, false), { stream: true });
        const out = stops.length ? filt.push(text) : text;
        if (out) yield out;
        if (filt.hit) { stats.finish_reason = 'stop'; return; }
      }
      const rest = dec.decode();
      const tail = stops.length ? filt.push(rest) + (filt.hit ? '' : filt.flush()) : rest;
      if (filt.hit) stats.finish_reason = 'stop';
      if (tail) yield tail;
    } finally {
      await gen.return();
    }
  }

  /** The whole completion as one string. opts: max_tokens (128), temperature (0.8), top_k,
   * top_p, min_p, repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty, seed,
   * stop, signal, add_special, ignore_eos (camelCase spellings work too). */
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

  /** Prompt ids of a chat: the template already wrote any BOS it wants. */
  async chatIds(messages, opts = {}) {
    const text = await this.applyChatTemplate(messages, opts);
    const ids = this.model.tokenize(text, false, true);
    const info = this.info;
    if (info.add_bos && info.bos >= 0 && (!ids.length || ids[0] !== info.bos)) ids.unshift(info.bos);
    return ids;
  }

  _chatCreate(req = {}) {
    const created = Math.floor(Date.now() / 1000);
    const id = completionId();
    const model = req.model || this.id;
    const o = requestToOptions(req);
    const tplOpts = { chatTemplate: req.chat_template, extra: req.chat_template_kwargs };
    if (!req.stream) {
      return (async () => {
        const ids = await this.chatIds(req.messages, tplOpts);
        const stats = newStats();
        const content = await this.generate(ids, { ...o, stats });
        return {
          id, object: 'chat.completion', created, model,
          choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: stats.finish_reason }],
          usage: usageOf(stats),
        };
      })();
    }
    const self = this;
    const includeUsage = !!(req.stream_options && req.stream_options.include_usage);
    async function* chunks() {
      const ids = await self.chatIds(req.messages, tplOpts);
      const stats = newStats();
      const base = { id, object: 'chat.completion.chunk', created, model };
      yield { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] };
      for await (const piece of self.stream(ids, { ...o, stats })) {
        yield { ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }] };
      }
      yield { ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: stats.finish_reason }] };
      if (includeUsage) yield { ...base, choices: [], usage: usageOf(stats) };
    }
    return streamResult(chunks());
  }

  // ---------------------------------------------------------------- static
  /** The model cache (models kept from URLs): list(), has(url), delete(url), clear(), backend(). */
  static get cache() { return modelCache; }

  /** [{name, key, refs, memoryBytes}] of the models this JS realm holds. */
  static loadedModels() { return store.loadedModels(); }

  /** Bytes of wasm memory held by every loaded model in this JS realm. */
  static memoryBytes() { return store.memoryBytes(); }
}

/**
 * The result of a streaming create(): like the OpenAI SDK, a Promise of an async
 * iterable of chunks; for convenience the promise itself is async-iterable too.
 */
export function streamResult(iter) {
  const stream = {
    [Symbol.asyncIterator]() { return iter; },
    /** Stop the stream (as the OpenAI SDK's stream.controller.abort()). */
    controller: { abort: () => iter.return() },
  };
  const p = Promise.resolve(stream);
  p[Symbol.asyncIterator] = () => iter;
  return p;
}
