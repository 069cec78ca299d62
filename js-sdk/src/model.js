// One model in its own realm.wasm instance: the GGUF header and the tensor data,
// copied once into the instance's memory, plus its tokenizer and metadata.
// The JS twin of realm_web/core_model.py (CoreModel). Sessions live in session.js.
// Share models through store.js rather than loading them directly.
import { WasmCore } from './core.js';
import { RealmError, ModelFormatError } from './errors.js';
import { asSource } from './sources.js';
import { STRUCTS, readStruct } from './abi.js';

/** realm_model_info's ModelInfo (core/abi.json), add_bos/add_eos as booleans. */
export function readModelInfo(c, handle) {
  const size = STRUCTS.ModelInfo.size;
  const w = c.alloc(size);
  try {
    if (!c.call('realm_model_info', handle, w)) throw c.error('realm_model_info');
    const info = readStruct('ModelInfo', c.dv(w, size));
    info.add_bos = !!info.add_bos;
    info.add_eos = !!info.add_eos;
    return info;
  } finally {
    c.free(w);
  }
}

export const FIRST_READ = 1 << 20; // header bytes offered first; the core asks for more if needed
const COPY_CHUNK = 8 << 20;        // weights are streamed into wasm memory in chunks of this size

// GGUF value types
const GGUF = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 };
const SCALAR_SIZE = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const utf8 = new TextDecoder('utf-8');


function readScalar(dv, off, typ) {
  switch (typ) {
    case GGUF.U8: return dv.getUint8(off);
    case GGUF.I8: return dv.getInt8(off);
    case GGUF.U16: return dv.getUint16(off, true);
    case GGUF.I16: return dv.getInt16(off, true);
    case GGUF.U32: return dv.getUint32(off, true);
    case GGUF.I32: return dv.getInt32(off, true);
    case GGUF.F32: return dv.getFloat32(off, true);
    case GGUF.BOOL: return dv.getUint8(off) !== 0;
    case GGUF.U64: { const v = dv.getBigUint64(off, true); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case GGUF.I64: { const v = dv.getBigInt64(off, true); return (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) ? Number(v) : v; }
    case GGUF.F64: return dv.getFloat64(off, true);
    default: throw new RealmError(`unknown GGUF value type ${typ}`);
  }
}

// realm_batch_eval's flags (core/batch.h)
const BATCH_ALL_LOGITS = 1, BATCH_NO_LOGITS = 2;

function perSession(v, n, what) {
  if (typeof v === 'boolean') return new Array(n).fill(v);
  const a = Array.from(v, Boolean);
  if (a.length !== n) throw new RealmError(`${what}: ${n} sessions need ${n} values (got ${a.length})`);
  return a;
}

function throwIfAborted(signal) {
  if (signal && signal.aborted) throw signal.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}

export class CoreModel {
  /**
   * Load a model into a fresh realm.wasm instance.
   * source: anything sources.asSource takes, or a source object.
   * opts: { onProgress({loaded,total}), signal, vocabOnly, headerOnly, cache, gpuDevice, threads, simd }
   */
  static async load(source, opts = {}) {
    const src = await asSource(source, opts);
    // threads: only where this core computes (not for tokenizers, nor weights on the GPU)
    const cpuWork = !(opts.vocabOnly || opts.headerOnly || opts.gpuDevice);
    const core = await WasmCore.create({ threads: cpuWork ? opts.threads : 1, simd: opts.simd, wasm: opts.wasm });
    const m = new CoreModel(core, src, opts);
    try {
      await m._open(opts);
    } catch (e) {
      m.free();
      throw e;
    }
    return m;
  }

  constructor(core, source, opts) {
    this.core = core;
    this.source = source;
    this.name = source.name;
    this.vocabOnly = !!(opts.vocabOnly || opts.headerOnly);
    this.headerOnly = !!opts.headerOnly;
    this.handle = 0;
    this.info = null;
    this.size = 0;
    this.fromCache = false;
    this._meta = null;
    this._piece = 0;
    this._pieceCap = 0;
    this.gpuDevice = opts.gpuDevice || null; // load the weights into this WebGPU device (webgpu.js)
    this.gpu = null;                          // then: its GpuModel (plan, weight buffers)
    if (this.gpuDevice) this.vocabOnly = true; // no weights in wasm memory, no CPU sessions
  }

  async _open({ onProgress, signal } = {}) {
    const c = this.core;
    const reader = await this.source.open({ signal, onProgress });
    let ok = false;
    try {
      const size = reader.size;
      this.size = size;
      this.fromCache = !!reader.fromCache;
      let loaded = 0;
      const report = () => { if (onProgress) onProgress({ loaded, total: size }); };
      report();
      // --- header: offer the first MiB; the core says how much more it needs
      let head = new Uint8Array(Math.min(size, FIRST_READ));
      let have = 0;
      const readHead = async (n) => {
        if (n > head.length) { const h = new Uint8Array(Math.max(n, Math.min(size, head.length * 2))); h.set(head.subarray(0, have)); head = h; }
        while (have < n) {
          throwIfAborted(signal);
          const chunk = await reader.read(n - have);
          if (!chunk) throw new ModelFormatError(`${this.name}: the file ended after ${have} bytes (expected ${size})`);
          head.set(chunk, have);
          have += chunk.length;
          loaded += chunk.length;
        }
        report();
      };
      let n = Math.min(size, FIRST_READ);
      for (;;) {
        await readHead(n);
        const buf = c.alloc(n);
        c.write(buf, head.subarray(0, n));
        const h = c.call('realm_model_open', buf, n, size);
        if (h) { this.handle = h; break; }
        const need = c.call('realm_model_need');
        c.free(buf);
        if (!need || need <= n) throw c.error(this.name);
        n = Math.min(need, size);
      }
      if (this.headerOnly) return;
      if (this.gpuDevice) {
        // --- WebGPU: tokenizer in the core, tensors bound without weights, the plan,
        // then the weights straight from the source into GPU buffers
        if (!c.call('realm_model_load', this.handle, 1)) throw c.error(this.name);
        const { GpuModel, buildPlan } = await import('./webgpu.js');
        this.gpu = new GpuModel(this.gpuDevice, buildPlan(this, this.gpuDevice));
        await this.gpu.upload(reader, head, have, {
          signal, name: this.name,
          onBytes: (n) => { loaded += n; report(); },
        });
        head = null;
        loaded = size;
      } else if (!this.vocabOnly) {
        // --- weights: file bytes [off, off + nbytes) -> wasm memory at dst, in chunks
        const off = c.call('realm_model_data_offset', this.handle);
        const nbytes = c.call('realm_model_data_size', this.handle);
        const dst = c.call('realm_model_weights', this.handle);
        if (nbytes && !dst) throw c.error(`${this.name} (weights: ${nbytes} bytes)`);
        let done = 0;
        if (have > off) { // part of the data section came with the header read
          const k = Math.min(have - off, nbytes);
          c.write(dst, head.subarray(off, off + k));
          done = k;
        } else if (have < off) {
          await reader.skip(off - have);
          loaded += off - have;
        }
        head = null;
        while (done < nbytes) {
          throwIfAborted(signal);
          const k = Math.min(COPY_CHUNK, nbytes - done);
          // a fresh view each time: memory.buffer is replaced if anything grew memory
          const got = await reader.readInto(c.u8(dst + done, k));
          if (got < k) throw new ModelFormatError(`${this.name}: the file ended inside the tensor data (${off + done + got} of ${off + nbytes} bytes)`);
          done += k;
          loaded += k;
          report();
        }
        loaded = size;
      }
      throwIfAborted(signal);
      if (!this.gpu && !c.call('realm_model_load', this.handle, this.vocabOnly ? 1 : 0)) throw c.error(this.name);
      this.info = readModelInfo(c, this.handle);
      ok = true;
      if (!this.vocabOnly || this.gpu) report();
    } finally {
      if (ok && (!this.vocabOnly || this.gpu)) await reader.finish(true);
      else if (typeof reader.finish === 'function') await reader.finish(false).catch(() => {});
    }
  }

  /** Frees the model and its instance's weights (free its sessions first). */
  free() {
    if (this.gpu) { this.gpu.destroy(); this.gpu = null; }
    if (this._bbuf) { this.core.free(this._bbuf); this._bbuf = 0; this._bcap = 0; }
    if (this.handle) {
      this.core.call('realm_model_free', this.handle);
      this.handle = 0;
    }
    if (this._piece) { this.core.free(this._piece); this._piece = 0; }
    if (this.core) this.core.close(); // its worker threads
    this.core = null;
    this.info = null;
  }

  /**
   * GBNF for a JSON Schema (an object or its JSON text), converted by the core
   * (realm_json_schema_gbnf, llama.cpp's json-schema-to-grammar semantics); rule names start
   * with prefix, the start rule is prefix + "root". A bad schema throws a RealmError naming
   * the schema path and the problem.
   */
  jsonSchemaGbnf(schema, prefix = '') {
    const c = this.core;
    const [sp, sl] = c.allocString(typeof schema === 'string' ? schema : JSON.stringify(schema));
    const [pp] = c.allocString(String(prefix));
    const lp = c.alloc(8);
    try {
      const out = c.call('realm_json_schema_gbnf', sp, sl, pp, lp);
      if (!out) throw c.error();
      const n = Number(c.dv(lp, 8).getBigUint64(0, true));
      const text = c.readString(out, n);
      c.free(out);
      return text;
    } finally {
      c.free(sp);
      c.free(pp);
      c.free(lp);
    }
  }

  get freed() { return !this.core; }

  _check() { if (!this.core || !this.handle) throw new RealmError('this model has been unloaded'); }

  /** Bytes of wasm memory this model's instance holds (weights, header, sessions). */
  memoryBytes() { return this.core ? this.core.memoryBytes() : 0; }

  // --------------------------------------------------------------- metadata
  /** Raw metadata entries: [{key, type, arrType, arrLen, ptr, len}] (pointers into the model). */
  _entries() {
    this._check();
    if (this._rawEntries) return this._rawEntries;
    const c = this.core;
    const size = STRUCTS.MetaEntry.size;
    const buf = c.alloc(size);
    const out = [];
    try {
      const n = c.call('realm_model_meta_count', this.handle);
      for (let i = 0; i < n; i++) {
        if (!c.call('realm_model_meta_entry', this.handle, i, buf)) throw c.error('realm_model_meta_entry');
        const e = readStruct('MetaEntry', c.dv(buf, size));
        out.push({ key: c.readString(e.key_ptr, e.key_len), type: e.type, arrType: e.arr_type, arrLen: e.arr_len, ptr: e.val_ptr, len: e.val_len });
      }
    } finally {
      c.free(buf);
    }
    return (this._rawEntries = out);
  }

  _decode(e) {
    const c = this.core;
    if (e.type === GGUF.STRING) {
      const ln = Number(c.dv(e.ptr, 8).getBigUint64(0, true));
      return c.readString(e.ptr + 8, ln);
    }
    if (e.type !== GGUF.ARRAY) return readScalar(c.dv(e.ptr, SCALAR_SIZE[e.type]), 0, e.type);
    const raw = c.read(e.ptr, e.len);
    const dv = new DataView(raw.buffer);
    const out = new Array(e.arrLen);
    if (e.arrType === GGUF.STRING) {
      let p = 0;
      for (let i = 0; i < e.arrLen; i++) {
        const ln = Number(dv.getBigUint64(p, true));
        out[i] = utf8.decode(raw.subarray(p + 8, p + 8 + ln));
        p += 8 + ln;
      }
      return out;
    }
    const sz = SCALAR_SIZE[e.arrType];
    if (!sz) throw new RealmError(`metadata ${e.key}: nested arrays are not supported`);
    for (let i = 0; i < e.arrLen; i++) out[i] = readScalar(dv, i * sz, e.arrType);
    return out;
  }

  /** One metadata value by key (undefined if absent), decoding only that entry. */
  meta(key) {
    if (this._meta) return this._meta[key];
    const e = this._entries().find((x) => x.key === key);
    return e ? this._decode(e) : undefined;
  }

  /** The i-th string of a string-array metadata entry, without decoding the rest. */
  metaArrayString(key, i) {
    const e = this._entries().find((x) => x.key === key);
    if (!e || e.type !== GGUF.ARRAY || e.arrType !== GGUF.STRING || i < 0 || i >= e.arrLen) return undefined;
    const c = this.core;
    const raw = c.u8(e.ptr, e.len);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    let p = 0;
    for (let k = 0; k < i; k++) p += 8 + Number(dv.getBigUint64(p, true));
    const ln = Number(dv.getBigUint64(p, true));
    return utf8.decode(raw.slice(p + 8, p + 8 + ln));
  }

  /** Every GGUF metadata key -> value (arrays as arrays), as the core parsed it. */
  metadata() {
    if (!this._meta) {
      const m = {};
      for (const e of this._entries()) m[e.key] = this._decode(e);
      this._meta = m;
    }
    return this._meta;
  }

  /** [{name, type, shape, offset, nbytes}] of every tensor (shape in ggml order). */
  tensors() {
    this._check();
    const c = this.core;
    const size = STRUCTS.TensorEntry.size;
    const buf = c.alloc(size);
    const res = [];
    try {
      const n = c.call('realm_model_tensor_count', this.handle);
      for (let i = 0; i < n; i++) {
        if (!c.call('realm_model_tensor_entry', this.handle, i, buf)) throw c.error('realm_model_tensor_entry');
        const e = readStruct('TensorEntry', c.dv(buf, size));
        res.push({ name: c.readString(e.name_ptr, e.name_len), type: e.type, shape: [e.ne0, e.ne1, e.ne2, e.ne3].slice(0, e.n_dims), offset: e.offset, nbytes: e.nbytes });
      }
    } finally {
      c.free(buf);
    }
    return res;
  }

  dataOffset() { this._check(); return this.core.call('realm_model_data_offset', this.handle); }

  // ------------------------------------------------------------------ tokens
  /** Token ids of text (a string or UTF-8 bytes). */
  tokenize(text, addSpecial = true, parseSpecial = false) {
    this._check();
    const c = this.core;
    const [tp, len] = c.allocString(text);
    try {
      let cap = len + 8;
      for (;;) {
        const op = c.alloc(cap * 4);
        try {
          const n = c.call('realm_tokenize', this.handle, tp, len, addSpecial ? 1 : 0, parseSpecial ? 1 : 0, op, cap);
          if (n < 0) throw c.error('tokenize failed');
          if (n <= cap) return c.readI32(op, n);
          cap = n;
        } finally {
          c.free(op);
        }
      }
    } finally {
      c.free(tp);
    }
  }

  /** The bytes of one token (a copy). */
  piece(token, special = true) {
    this._check();
    const c = this.core;
    if (!this._piece) { this._pieceCap = 256; this._piece = c.alloc(this._pieceCap); }
    for (;;) {
      const n = c.call('realm_token_piece', this.handle, token | 0, special ? 1 : 0, this._piece, this._pieceCap);
      if (n < 0) throw new RealmError(`token id ${token} is out of range (vocabulary of ${this.info ? this.info.n_vocab : '?'})`);
      if (n <= this._pieceCap) return c.read(this._piece, n);
      c.free(this._piece);
      this._piece = 0;
      this._pieceCap = n;
      this._piece = c.alloc(n);
    }
  }

  /** The bytes of a sequence of tokens. */
  detokenize(ids, special = false) {
    const parts = [];
    let total = 0;
    for (const id of ids) { const p = this.piece(id, special); parts.push(p); total += p.length; }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }

  isEog(token) {
    this._check();
    return !!this.core.call('realm_token_is_eog', this.handle, token | 0);
  }

  // ---------------------------------------------------------------- batches
  // Continuous batching (core/api_batch.c; docs/ARCHITECTURE.md "Batches"): one forward
  // pass for several sessions of this model, each weight read once for all of them; each
  // session's logits are bit for bit what Session.eval would give it alone. The JS twin
  // of realm_web/core_model.py's eval_batch / step_batch.

  /** Tokens one batched step may hold, all sessions together (realm_batch_max_tokens). */
  batchMaxTokens() {
    this._check();
    return this.core.call('realm_batch_max_tokens');
  }

  /**
   * One forward pass for several sessions of this model: sessions[i] (a Session of this
   * model) evaluates chunks[i] (a prompt chunk, or one decode token) after its own
   * history. opts.allLogits / opts.logits: a boolean, or one per session (logits of
   * every row / of none; default: the last row). At most batchMaxTokens() ids in all.
   * On error (the class of the core's error kind: ContextOverflowError, RealmError, ...)
   * error.sessionIndex names the session (null: the whole batch) and no session changed.
   */
  evalBatch(sessions, chunks, { allLogits = false, logits = true } = {}) {
    const n = sessions.length;
    const al = perSession(allLogits, n, 'allLogits');
    const lg = perSession(logits, n, 'logits');
    this._batch('realm_batch_eval', sessions, chunks, al.map((a, i) => (lg[i] ? (a ? BATCH_ALL_LOGITS : 0) : BATCH_NO_LOGITS)));
  }

  /**
   * One decode step of several sessions in one call: sessions[i] evaluates tokens[i] (an
   * id, or an array of ids: a prompt chunk), then samples its next token with its own
   * sampler (as Session.step). Returns the next ids. opts.logits: false (or false for a
   * session) evaluates without logits and samples nothing: its id is -1 (a prompt chunk
   * that is not the prompt's last). Errors as evalBatch.
   */
  stepBatch(sessions, tokens, { logits = true } = {}) {
    const chunks = Array.from(tokens, (t) => (typeof t === 'number' || typeof t === 'bigint' ? [Number(t)] : Array.from(t, Number)));
    const lg = perSession(logits, chunks.length, 'logits');
    return this._batch('realm_batch_step', sessions, chunks, lg.map((w) => (w ? 0 : BATCH_NO_LOGITS)));
  }

  /** One realm_batch_eval / realm_batch_step call: [n pointer-sized handles][n u32 counts][n u32 flags][n i32 out][ids]. */
  _batch(name, sessions, chunks, flags) {
    this._check();
    const n = sessions.length;
    if (chunks.length !== n || flags.length !== n) {
      throw new RealmError(`${n} sessions need ${n} chunks and flags (got ${chunks.length}, ${flags.length})`);
    }
    let total = 0;
    for (const ch of chunks) total += ch.length;
    const c = this.core;
    const need = 20 * n + 4 * total + 8;
    if (need > (this._bcap || 0)) {
      if (this._bbuf) c.free(this._bbuf);
      this._bbuf = 0;
      this._bcap = Math.max(need, 4096);
      this._bbuf = c.alloc(this._bcap);
    }
    const p = this._bbuf;
    const w = c.ptrBytes;   // the handles are pointer-sized: 8 bytes (Memory64) or 4 (wasm32)
    const pc = p + w * n, pf = p + (w + 4) * n, po = p + (w + 8) * n, pi = p + (w + 12) * n;
    const dv = c.dv(p, need);
    // a closed session passes handle 0: the core refuses it, naming its index
    c.setHandles(dv, sessions.map((s) => (s && s.handle) || 0));
    for (let i = 0; i < n; i++) {
      dv.setUint32(w * n + 4 * i, chunks[i].length, true);
      dv.setUint32((w + 4) * n + 4 * i, flags[i], true);
    }
    let at = pi;
    for (const ch of chunks) { c.writeI32(at, ch); at += 4 * ch.length; }
    const step = name === 'realm_batch_step';
    if (!c.call(name, this.handle, p, n, pi, pc, pf, ...(step ? [po] : []))) {
      const which = c.call('realm_batch_failed');
      const err = c.error();
      err.sessionIndex = which >= 0 ? which : null;
      throw err;
    }
    return step ? c.readI32(po, n) : undefined;
  }

  /** The text of a special token id from the vocabulary ('' if none). */
  tokenText(id) {
    if (typeof id !== 'number' || id < 0) return '';
    return this.metaArrayString('tokenizer.ggml.tokens', id) ?? '';
  }
}
