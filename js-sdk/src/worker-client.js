// Worker mode: the Realm API with inference off the calling thread.
//   const r = await Realm.load(url, {worker: true});   // or RealmWorker.load(url, opts)
// Every model loaded with worker: true shares one worker (so loading a source twice
// still shares one copy of the weights, held by that worker); pass a Worker of your
// own (new Worker(new URL('realm-web/worker', import.meta.url), {type: 'module'}))
// as `worker` to choose. Methods return Promises; stream() and chat streams are
// async iterables; AbortSignals are honoured within one token.
import { RealmError, ModelFormatError, UnsupportedModelError, ContextOverflowError, OutOfMemoryError } from './errors.js';
import { isNode } from './env.js';
import { objectId } from './sources.js';
import { normalizeOptions } from './options.js';
import { abortReason } from './abort.js';
import { streamResult } from './openai.js';
import { newStats, collectBatch } from './generation.js';

const ERRORS = { RealmError, ModelFormatError, UnsupportedModelError, ContextOverflowError, OutOfMemoryError };

function rebuildError(e) {
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return new DOMException(e.message, e.name);
  const C = ERRORS[e.name];
  let err;
  if (C) {
    err = new C(e.message);
  } else {
    err = new Error(e.message);
    err.name = e.name;
  }
  if (e.index != null) err.index = e.index;
  if (e.sessionIndex !== undefined) err.sessionIndex = e.sessionIndex;
  return err;
}

const clientId = Math.random().toString(36).slice(2, 10);

/** One worker and the calls in flight to it. */
class Connection {
  constructor(worker, { owned }) {
    this.worker = worker;
    this.owned = owned;     // created here: terminated when its last Realm unloads
    this.pending = new Map();
    this.nextId = 1;
    this.users = 0;
    const onMsg = (m) => this._onMessage(m);
    const onErr = (e) => this._fail(e);
    if (isNode) {
      worker.on('message', onMsg);
      worker.on('error', onErr);
      worker.on('exit', (code) => this._fail(new RealmError(`the realm-web worker exited (code ${code})`)));
    } else {
      worker.addEventListener('message', (ev) => onMsg(ev.data));
      worker.addEventListener('error', (ev) => { ev.preventDefault?.(); onErr(new RealmError(`the realm-web worker failed: ${ev.message || 'error'}`)); });
    }
    this._idle();
  }

  // Node: an idle worker must not keep the process alive
  _idle() { if (isNode && this.pending.size === 0 && this.worker.unref) this.worker.unref(); }
  _busy() { if (isNode && this.worker.ref) this.worker.ref(); }

  _fail(err) {
    this.dead = err instanceof Error ? err : new RealmError(String(err && err.message || err));
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
    if (connections.get(this.key) === this) connections.delete(this.key);
  }

  _onMessage(m) {
    const p = this.pending.get(m.id);
    if (!p) return; // a call the caller gave up on
    if (m.t === 'progress') { if (p.onProgress) p.onProgress(m.p); return; }
    if (m.t === 'item') { p.onItem(m.v); return; }
    this.pending.delete(m.id);
    this._idle();
    if (m.t === 'done') p.resolve(m.v);
    else p.reject(rebuildError(m.e));
  }

  /**
   * Send one call. handlers: {signal, onProgress, onItem, transfer, promptSignals}. Resolves
   * with the worker's result; rejects at once when signal aborts (the worker stops on its
   * own). promptSignals (streamBatch): one signal (or null) per prompt; an abort stops
   * that prompt only.
   */
  call(op, args, { signal, onProgress, onItem, transfer, promptSignals } = {}) {
    if (this.dead) return Promise.reject(this.dead);
    if (signal && signal.aborted) return Promise.reject(abortReason(signal));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      let onAbort = null;
      const subs = [];
      const done = (f) => (v) => {
        if (onAbort) signal.removeEventListener('abort', onAbort);
        for (const [sig, h] of subs) sig.removeEventListener('abort', h);
        f(v);
      };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject), onProgress, onItem: onItem || (() => {}) });
      if (signal) {
        onAbort = () => {
          this.pending.delete(id);
          this._idle();
          this.worker.postMessage({ t: 'abort', id });
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this._busy();
      this.worker.postMessage({ t: 'call', id, op, args }, transfer || []);
      (promptSignals || []).forEach((sig, index) => {
        if (!sig) return;
        const h = () => { if (this.pending.has(id)) this.worker.postMessage({ t: 'abort', id, index }); };
        if (sig.aborted) { h(); return; }
        sig.addEventListener('abort', h, { once: true });
        subs.push([sig, h]);
      });
    });
  }

  /** An async iterator over a call's items (stream, tokens, chat chunks). */
  iterate(op, args, { signal, promptSignals } = {}) {
    const queue = [];
    let wake = null;
    let finished = false;
    let error = null;
    let result;
    const kick = () => { if (wake) { const w = wake; wake = null; w(); } };
    const ctrl = new AbortController(); // the consumer leaving early stops the worker too
    const onOuter = () => ctrl.abort(abortReason(signal));
    if (signal) { if (signal.aborted) onOuter(); else signal.addEventListener('abort', onOuter, { once: true }); }
    const p = this.call(op, args, { signal: ctrl.signal, promptSignals, onItem: (v) => { queue.push(v); kick(); } });
    p.then((v) => { result = v; finished = true; kick(); }, (e) => { error = e; finished = true; kick(); });
    const cleanup = () => { if (signal) signal.removeEventListener('abort', onOuter); };
    const it = {
      result: () => result,
      async next() {
        for (;;) {
          if (queue.length) return { value: queue.shift(), done: false };
          if (finished) {
            cleanup();
            if (error) { const e = error; error = null; queue.length = 0; throw e; }
            return { value: undefined, done: true };
          }
          await new Promise((r) => { wake = r; });
        }
      },
      async return(v) {
        cleanup();
        if (!finished) { ctrl.abort(new DOMException('The stream was closed.', 'AbortError')); }
        finished = true;
        error = null;
        queue.length = 0;
        return { value: v, done: true };
      },
      [Symbol.asyncIterator]() { return this; },
    };
    return it;
  }

  retain() { this.users++; }

  release() {
    this.users--;
    if (this.users <= 0 && this.owned) {
      if (connections.get(this.key) === this) connections.delete(this.key);
      this.worker.terminate();
      this.dead = new RealmError('the realm-web worker was closed');
    }
  }
}

const connections = new Map(); // 'default' or a user worker -> Connection

async function connect(worker) {
  if (worker && typeof worker === 'object') {
    let c = connections.get(worker);
    if (!c) { c = new Connection(worker, { owned: false }); c.key = worker; connections.set(worker, c); }
    return c;
  }
  let c = connections.get('default');
  if (!c) {
    const url = new URL('./worker.js', import.meta.url);
    let w;
    if (isNode) {
      const { Worker } = await import('node:worker_threads');
      w = new Worker(url);
    } else {
      w = new Worker(url, { type: 'module', name: 'realm-web' });
    }
    c = new Connection(w, { owned: true });
    c.key = 'default';
    connections.set('default', c);
  }
  return c;
}

function isBlob(x) { return typeof Blob !== 'undefined' && x instanceof Blob; }

// What crosses to the worker: URLs made absolute here (a worker resolves against its
// own URL), Blobs as is (no copy), byte arrays copied unless options.transfer.
async function portableSource(src, options) {
  const out = { identity: options.identity };
  if (typeof src === 'string' || src instanceof URL) {
    const s = String(src);
    if (isNode && !/^(https?|blob|data):/i.test(s)) {
      const path = await import('node:path');
      const { fileURLToPath } = await import('node:url');
      out.source = path.resolve(s.startsWith('file:') ? fileURLToPath(s) : s);
    } else {
      out.source = new URL(s, globalThis.location ? globalThis.location.href : undefined).href;
    }
    return out;
  }
  if (isBlob(src)) {
    out.source = src;
    out.identity = out.identity || `obj:${clientId}:${objectId(src)}`;
    return out;
  }
  if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
    const buf = src instanceof ArrayBuffer ? src : src.buffer;
    out.identity = out.identity || (src instanceof ArrayBuffer ? `obj:${clientId}:${objectId(src)}:0:${src.byteLength}` : `obj:${clientId}:${objectId(src.buffer)}:${src.byteOffset}:${src.byteLength}`);
    out.source = src;
    if (options.transfer) out.transfer = [buf];
    return out;
  }
  throw new RealmError('a model source is a URL, a File/Blob, an ArrayBuffer/Uint8Array, or (Node) a file path');
}

// LoRA adapter sources as they cross to the worker ([[source, scale], ...]: paths resolved,
// URLs absolute, Files and buffers as they are); null: none.
async function portableLora(spec) {
  if (spec == null) return null;
  if (!Array.isArray(spec)) throw new RealmError('lora: expected an array of [source, scale] pairs');
  const out = [];
  for (const x of spec) {
    const [src, scale] = Array.isArray(x) ? [x[0], x.length > 1 ? x[1] : 1]
      : x && typeof x === 'object' && (x.path != null || x.source != null) ? [x.source ?? x.path, x.scale ?? 1] : [x, 1];
    out.push([(await portableSource(src, {})).source, scale]);
  }
  return out;
}

// Options that can cross (no functions, no signals).
function portable(opts = {}) {
  const o = {};
  for (const [k, v] of Object.entries(opts)) {
    if (typeof v === 'function' || k === 'signal' || k === 'stats' || k === 'worker' || k === 'onProgress' || k === 'transfer') continue;
    if (typeof AbortSignal !== 'undefined' && v instanceof AbortSignal) continue;
    o[k] = v;
  }
  return o;
}

/** A Realm whose model and session live in a worker. Same API; every method is async. */
export class RealmWorker {
  static async load(source, options = {}) {
    if (source == null) throw new RealmError('Realm.load needs a model source (URL, File/Blob, ArrayBuffer or path)');
    const conn = await connect(options.worker === true ? null : options.worker);
    const { source: s, identity, transfer } = await portableSource(source, options);
    const lora = await portableLora(options.lora);
    conn.retain();
    try {
      const d = await conn.call('load', [s, { ...portable(options), identity, lora }], {
        signal: options.signal, onProgress: options.onProgress, transfer,
      });
      return new RealmWorker(conn, d);
    } catch (e) {
      conn.release();
      throw e;
    }
  }

  constructor(conn, d) {
    this._conn = conn;
    this._h = d.handle;
    this.info = d.info;
    this.nCtx = d.nCtx;
    this.device = d.device;
    this.deviceNote = d.deviceNote;
    this.threads = d.threads ?? 1;
    this.threadsNote = d.threadsNote ?? null;
    this.simd = d.simd ?? 'simd128';
    this.wasm = d.wasm ?? { arch: 'wasm64', file: null };
    this.id = d.id;
    this.source = d.source;
    this.fromCache = d.fromCache;
    this._lora = d.lora || [];
    this.isWorker = true;
    this.lastStats = null;
    this.lastBatchStats = [];
    this._closed = false;
    this.chat = { completions: { create: (req) => this._chatCreate(req) } };
  }

  get closed() { return this._closed; }

  _c() { if (this._closed) throw new RealmError('this Realm has been unloaded'); return this._conn; }

  async unload() {
    if (this._closed) return;
    this._closed = true;
    try { await this._conn.call('unload', [this._h]); } catch { /* the worker may be gone */ }
    this._conn.release();
  }

  /** As Realm.setLora: the adapters ([[source, scale], ...]) load in the worker, once per model there. */
  async setLora(spec) {
    this._lora = await this._c().call('setLora', [this._h, await portableLora(spec)]);
  }

  /** [[name, scale], ...] of the adapters this session applies. */
  get lora() { return (this._lora || []).map((x) => [...x]); }

  async tokenize(text, opts = {}) { return this._c().call('tokenize', [this._h, text, typeof opts === 'boolean' ? { addSpecial: opts } : opts]); }
  async detokenize(ids, opts = {}) { return this._c().call('detokenize', [this._h, Array.from(ids), opts]); }
  async metadata() { return this._c().call('metadata', [this._h]); }
  async applyChatTemplate(messages, opts = {}) { return this._c().call('applyChatTemplate', [this._h, messages, opts]); }
  async chatIds(messages, opts = {}) { return this._c().call('chatIds', [this._h, messages, opts]); }

  async generate(prompt, opts = {}) {
    const o = normalizeOptions(opts);
    const r = await this._c().call('generate', [this._h, toPortablePrompt(prompt), portable(o)], { signal: o.signal });
    this._setStats(r.stats, o.stats);
    return r.text;
  }

  async *stream(prompt, opts = {}) {
    yield* this._iter('stream', prompt, opts);
  }

  async *generateTokens(prompt, opts = {}) {
    yield* this._iter('generateTokens', prompt, opts);
  }

  async *_iter(op, prompt, opts) {
    const o = normalizeOptions(opts);
    const it = this._c().iterate(op, [this._h, toPortablePrompt(prompt), portable(o)], { signal: o.signal });
    try {
      for (;;) {
        const { value, done } = await it.next();
        if (done) break;
        yield value;
      }
      const res = it.result();
      if (res && res.stats) this._setStats(res.stats, o.stats);
    } finally {
      await it.return();
    }
  }

  /** Realm.streamBatch in the worker: the same events; a prompt's own signal stops that prompt only. */
  async *streamBatch(prompts, opts = {}) {
    if (!Array.isArray(prompts)) throw new RealmError('streamBatch: prompts is an array');
    const o = normalizeOptions(opts);
    const own = prompts.map((p) => (isItem(p) ? p.signal || null : null));
    const items = prompts.map((p) => (isItem(p)
      ? { ...portable(p), ...(p.prompt != null ? { prompt: toPortablePrompt(p.prompt) } : {}) }
      : { prompt: toPortablePrompt(p) }));
    const it = this._c().iterate('streamBatch', [this._h, items, portable(o)], { signal: o.signal, promptSignals: own });
    const stats = [];
    try {
      for (;;) {
        const { value, done } = await it.next();
        if (done) break;
        if (value.done) {
          value.stats = newStats(value.stats);
          stats[value.index] = value.stats;
          if (value.error) {
            const sig = own[value.index];
            // the prompt's own abort: its own reason, as in-thread
            if (value.error.name === 'AbortError' && sig && sig.aborted) {
              const index = value.error.index;
              value.error = abortReason(sig);
              try { if (value.error && typeof value.error === 'object') value.error.index = index; } catch { /* frozen */ }
            } else {
              value.error = rebuildError(value.error);
            }
          }
        }
        yield value;
      }
      this.lastBatchStats = stats;
    } finally {
      await it.return();
    }
  }

  /** Realm.generateBatch in the worker. */
  async generateBatch(prompts, opts = {}) {
    return collectBatch(this.streamBatch(prompts, opts), prompts.length);
  }

  _setStats(s, into) {
    const stats = into ? Object.assign(into, s) : newStats(s);
    this.lastStats = stats;
  }

  _chatCreate(req = {}) {
    const signal = req.signal;
    const r = portable(req);
    if (!req.stream) return this._c().call('chat', [this._h, r], { signal });
    const it = this._c().iterate('chat', [this._h, r], { signal });
    return streamResult(it);
  }

  /** Stop this Realm's worker-side work and forget it (same as unload). */
  async terminate() { await this.unload(); }
}

// a batch prompt given as an object ({prompt} or {messages}, with its own options)
function isItem(p) {
  return p != null && typeof p === 'object' && !ArrayBuffer.isView(p) && typeof p[Symbol.iterator] !== 'function';
}

function toPortablePrompt(p) {
  if (typeof p === 'string') return p;
  return Array.from(p, (x) => Number(x));
}
