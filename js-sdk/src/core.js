// One instance of realm.wasm: its memory, its exports, its errors.
// The JS twin of realm_web/wasm_host.py. Knows nothing about models.
//
// Memory64: every pointer and size crossing the ABI is an i64, which JS sees as a
// BigInt. The wrappers made here take Numbers (or BigInts) for i64 parameters and
// return Numbers for i64 results (pointers stay below V8's 16 GiB cap, far under
// 2^53), so callers never touch BigInt. The parameter types are read from the
// module's own type section, so the wrappers follow the ABI as built.
//
// Views over memory are made per access (memory.buffer is replaced whenever the
// memory grows; an old view would be detached).

import { ABI_VERSION, ERROR_KINDS, EXPORTS } from './abi.js';
import { RealmError, ModelFormatError, UnsupportedModelError, ContextOverflowError, OutOfMemoryError } from './errors.js';
import { isNode } from './env.js';

// realm_last_error_kind() (core/abi.json's error_kinds) -> the class the SDK throws
const BY_KIND = {
  format: ModelFormatError, unsupported: UnsupportedModelError,
  context_full: ContextOverflowError, out_of_memory: OutOfMemoryError,
};

export { RealmError, ModelFormatError, UnsupportedModelError, ContextOverflowError, OutOfMemoryError } from './errors.js';
export { isNode } from './env.js';

// ------------------------------------------------------------------ the module

// Six builds of the same core (build.py), same ABI, same results bit for bit:
// realm.wasm (Memory64, one thread, its own memory), realm-mt.wasm (wasm threads
// over an imported shared memory; see threads.js), realm32.wasm (32-bit
// pointers, 4 GiB, one thread: for engines without Memory64, e.g. Safari, Node 20),
// and each with relaxed SIMD (realm-relaxed.wasm, ...), used where the engine has it.
let wasmOverride = null;   // {st, mt, 'st-relaxed', 'mt-relaxed', w32, 'w32-relaxed'}: sources; null: the defaults
const compiled = {};       // Promise<{module, sigs, where}> per build

const wasmFile = (mt, relaxed, w32 = false) => `realm${w32 ? '32' : ''}${mt ? '-mt' : ''}${relaxed ? '-relaxed' : ''}.wasm`;
const buildKey = (mt, relaxed, w32 = false) => `${w32 ? 'w32' : (mt ? 'mt' : 'st')}${relaxed ? '-relaxed' : ''}`;

// A module with one Memory64 memory (limits flag 0x04): validates only where the
// engine has Memory64 (V8 >= 13.3: Node >= 22 without a flag... see PLATFORM.md).
const MEMORY64_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 3, 1, 4, 1]);

/** Whether this engine runs Memory64 modules (realm.wasm); else realm32.wasm is used. */
export function memory64Supported() {
  try {
    return WebAssembly.validate(MEMORY64_PROBE);
  } catch {
    return false;
  }
}

/**
 * Which build to run: options.wasm (or $REALM_WASM = wasm32|wasm64|auto in Node) is
 * 'auto' (default: Memory64 where the engine has it, else wasm32), 'wasm64' or 'wasm32'.
 * Returns 'wasm64' or 'wasm32'.
 */
export function chooseWasmArch(wasm) {
  const env = isNode ? String(process.env.REALM_WASM || '').toLowerCase() : '';
  const mode = String(wasm ?? (['wasm32', 'wasm64', 'auto'].includes(env) ? env : null) ?? 'auto').toLowerCase();
  if (!['auto', 'wasm32', 'wasm64'].includes(mode)) throw new RealmError(`wasm: '${mode}'; use 'auto', 'wasm64' or 'wasm32'`);
  const has64 = memory64Supported();
  if (mode === 'wasm64' && !has64) {
    throw new RealmError("wasm: 'wasm64', but this JavaScript engine has no Memory64 (Node >= 22 or a current browser has it); use 'auto' or 'wasm32'");
  }
  return mode === 'wasm32' || (mode === 'auto' && !has64) ? 'wasm32' : 'wasm64';
}

/**
 * Where realm.wasm comes from: a URL (string or URL), a file path (Node), or its bytes.
 * options.threads, options.relaxed, options.threadsRelaxed: the same for realm-mt.wasm,
 * realm-relaxed.wasm and realm-mt-relaxed.wasm (default: beside src, if src is a URL or
 * path; for bytes, builds not given are not used). Call before the first load; later
 * loads reuse the compiled modules.
 */
export function setWasmSource(src, options = {}) {
  const beside = (mt, relaxed, w32) => (src instanceof URL || typeof src === 'string'
    ? String(src).replace(/realm(32)?(-[a-z]+)*\.wasm($|[?#])/, `${wasmFile(mt, relaxed, w32)}$3`) : null);
  const pick = (given, mt, relaxed, w32 = false) => {
    const v = given ?? beside(mt, relaxed, w32);
    return v === String(src) ? null : v;
  };
  wasmOverride = {
    st: src,
    mt: pick(options.threads, true, false),
    'st-relaxed': pick(options.relaxed, false, true),
    'mt-relaxed': pick(options.threadsRelaxed, true, true),
    w32: pick(options.wasm32, false, false, true),
    'w32-relaxed': pick(options.wasm32Relaxed, false, true, true),
  };
  for (const k of Object.keys(compiled)) delete compiled[k];
}

// i16x8.relaxed_dot_i8x16_i7x16_s in a function body: validates only where the
// engine has relaxed SIMD (V8 >= 11.4: Chromium >= 114, Node >= 22; not Node 20
// without --experimental-wasm-relaxed-simd). The Python host uses the same probe.
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 43, 1, 41, 0,
  0xfd, 12, ...new Array(16).fill(0), 0xfd, 12, ...new Array(16).fill(0), 0xfd, 0x92, 2, 11]);

/** Whether this engine runs relaxed SIMD. */
export function relaxedSimdSupported() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/**
 * Whether to load a relaxed-SIMD build: options.simd (or $REALM_SIMD in Node) is
 * 'auto' (default: when the engine has it), 'relaxed' or 'simd128'.
 */
export function wantRelaxedSimd(simd) {
  const mode = String(simd ?? (isNode ? process.env.REALM_SIMD : null) ?? 'auto').toLowerCase();
  if (!['auto', 'relaxed', 'simd128'].includes(mode)) throw new RealmError(`simd: '${mode}'; use 'auto', 'relaxed' or 'simd128'`);
  if (mode === 'simd128') return false;
  const ok = relaxedSimdSupported();
  if (mode === 'relaxed' && !ok) throw new RealmError("simd: 'relaxed', but this JavaScript engine has no relaxed SIMD");
  return ok;
}

// Candidates, in order: the copy shipped in the npm package (js-sdk/wasm/, made by
// `npm pack`), then the repository's build (realm_web/wasm/, `python build.py`).
function defaultWasmCandidates(file) {
  return [new URL(`../wasm/${file}`, import.meta.url), new URL(`../../realm_web/wasm/${file}`, import.meta.url)];
}

async function readWasmBytes(src) {
  if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) return src;
  const url = src instanceof URL ? src : (isNode && !/^[a-z][a-z0-9+.-]*:/i.test(String(src)) ? null : new URL(String(src), globalThis.location?.href));
  if (isNode && (!url || url.protocol === 'file:')) {
    const fs = await import('node:fs/promises');
    return fs.readFile(url ? (await import('node:url')).fileURLToPath(url) : String(src));
  }
  const res = await fetch(url);
  if (!res.ok) throw new RealmError(`could not fetch realm.wasm from ${url}: HTTP ${res.status}`);
  return res.arrayBuffer();
}

const ENV_WASM = {
  st: 'REALM_WASM', mt: 'REALM_WASM_MT', 'st-relaxed': 'REALM_WASM_RELAXED', 'mt-relaxed': 'REALM_WASM_MT_RELAXED',
  w32: 'REALM_WASM32', 'w32-relaxed': 'REALM_WASM32_RELAXED',
};
// $REALM_WASM* name a module file, except these words (chooseWasmArch reads them)
const envWasmFile = (name) => {
  const v = isNode ? process.env[name] : null;
  return v && !['wasm32', 'wasm64', 'auto'].includes(v.toLowerCase()) ? v : null;
};

// The compiled build, or null when it has no source (a relaxed build that
// setWasmSource / $REALM_WASM did not name: the caller uses the plain one).
async function compileOnce(mt, relaxed, w32 = false) {
  const file = wasmFile(mt, relaxed, w32);
  const key = buildKey(mt, relaxed, w32);
  let src = wasmOverride ? wasmOverride[key] : null;
  if (src == null) src = envWasmFile(ENV_WASM[key]);
  if (src == null && relaxed && (wasmOverride != null || !!envWasmFile(w32 ? 'REALM_WASM32' : 'REALM_WASM'))) return null;
  if (src == null && w32 && wasmOverride != null) throw new RealmError('setWasmSource: no realm32.wasm given (options.wasm32)');
  if (src == null && mt && wasmOverride != null) throw new RealmError('setWasmSource: no realm-mt.wasm given (options.threads)');
  if (src instanceof WebAssembly.Module) {
    throw new RealmError('setWasmSource: pass realm.wasm as a URL, a path or its bytes (the host reads its export signatures from the binary)');
  }
  let bytes = null;
  let where = '';
  if (src != null) {
    bytes = await readWasmBytes(src);
    where = String(src);
  } else {
    const errs = [];
    for (const cand of defaultWasmCandidates(file)) {
      try {
        bytes = await readWasmBytes(cand);
        where = cand.href;
        break;
      } catch (e) {
        errs.push(`${cand.href}: ${e.message}`);
      }
    }
    if (!bytes) {
      throw new RealmError(`${file} not found (run \`python build.py\` in the repository, or call setWasmSource(url)): ` + errs.join('; '));
    }
  }
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength);
  // Always asynchronous: Chromium refuses synchronous compiles of big modules on the main thread.
  let module;
  try {
    module = await WebAssembly.compile(u8);
  } catch (e) {
    if (!w32 && /memory64|memory limits flags|table.*limits/i.test(String(e && e.message))) {
      throw new RealmError('this JavaScript engine cannot run realm.wasm (Memory64): use wasm: "auto" or "wasm32" ' +
        `(realm32.wasm, models up to 4 GiB), Node >= 22 or a current Chromium; ${e.message}`, { cause: e });
    }
    throw e;
  }
  const sigs = parseSignatures(u8);
  if (!sigs) throw new RealmError(`${where}: could not read the export signatures of realm.wasm`);
  return { module, sigs, where, relaxed, arch: w32 ? 'wasm32' : 'wasm64', file };
}

/**
 * The compiled realm.wasm, or with threads realm-mt.wasm, with relaxed its relaxed-SIMD
 * build (each compiled once per JS realm). A relaxed build that is missing or does not
 * compile falls back to the plain one (result.relaxed false, result.note why).
 */
export function compileCore({ threads = false, relaxed = false, wasm32 = false } = {}) {
  if (wasm32 && threads) throw new RealmError('there is no wasm32 build with threads (realm32.wasm runs on one thread)');
  const k = buildKey(threads, relaxed, wasm32);
  if (!compiled[k]) {
    const p = compiled[k] = relaxed
      ? compileOnce(threads, true, wasm32).then((c) => c || compileCore({ threads, wasm32 }),
        (e) => compileCore({ threads, wasm32 }).then((c) => ({ ...c, note: `${wasmFile(threads, true, wasm32)}: ${e.message}` })))
      : compileOnce(threads, false, wasm32);
    p.catch(() => { if (compiled[k] === p) delete compiled[k]; });
  }
  return compiled[k];
}

// ------------------------------------------------- signatures from the binary

const VALTYPE = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };

/** name -> {params: ['i64', ...], results: [...]} for every exported function. */
export function parseSignatures(bytes) {
  let p = 8;
  const u8 = bytes;
  const leb = () => { // unsigned LEB128 (values here fit in 2^53)
    let result = 0, mul = 1, b;
    do { b = u8[p++]; result += (b & 0x7f) * mul; mul *= 128; } while (b & 0x80);
    return result;
  };
  const name = () => { const n = leb(); const s = new TextDecoder().decode(u8.subarray(p, p + n)); p += n; return s; };
  let memoryMin = 0;
  const limits = () => { const flags = u8[p++]; const min = leb(); if (flags & 1) leb(); return min; };
  const types = [];
  const funcTypes = []; // type index per function index (imports first)
  const out = {};
  while (p < u8.length) {
    const id = u8[p++];
    const size = leb();
    const end = p + size;
    if (id === 1) {
      for (let n = leb(); n > 0; n--) {
        if (u8[p++] !== 0x60) return null; // not a plain function type (GC proposal): not a module this host knows
        const params = []; const results = [];
        for (let k = leb(); k > 0; k--) params.push(VALTYPE[u8[p++]] || '?');
        for (let k = leb(); k > 0; k--) results.push(VALTYPE[u8[p++]] || '?');
        types.push({ params, results });
      }
    } else if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        name(); name();
        const kind = u8[p++];
        if (kind === 0) funcTypes.push(leb());
        else if (kind === 1) { p++; limits(); }
        else if (kind === 2) memoryMin = limits();
        else if (kind === 3) { p += 2; }
        else if (kind === 4) { p++; leb(); }
      }
    } else if (id === 3) {
      for (let n = leb(); n > 0; n--) funcTypes.push(leb());
    } else if (id === 7) {
      for (let n = leb(); n > 0; n--) {
        const nm = name(); const kind = u8[p++]; const idx = leb();
        if (kind === 0) out[nm] = types[funcTypes[idx]];
      }
      // an imported memory's minimum (realm-mt.wasm), in pages; not an export
      Object.defineProperty(out, 'memoryMinPages', { value: memoryMin, enumerable: false });
      return out;
    }
    p = end;
  }
  return out;
}

// ------------------------------------------------------------------ instance

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8');

function wrapExport(name, f, sig) {
  // i64 params: accept Number or BigInt; i64 results: Number.
  if (!sig) throw new RealmError(`realm.wasm: no signature found for export ${name}`);
  const p64 = sig.params.map((t) => t === 'i64');
  const r64 = sig.results[0] === 'i64';
  // wasm32: a pointer result is an i32, which JS reads as signed; keep it unsigned
  const rPtr32 = sig.results[0] === 'i32' && EXPORTS[name] && EXPORTS[name][1] === 'ptr';
  const n = p64.length;
  const conv = (args) => {
    for (let i = 0; i < n; i++) {
      const a = args[i];
      if (p64[i]) args[i] = typeof a === 'bigint' ? a : BigInt(Math.trunc(a ?? 0));
      else if (typeof a === 'bigint') args[i] = Number(a);
      else if (typeof a === 'boolean') args[i] = a ? 1 : 0;
    }
    return args;
  };
  return (...args) => {
    let r;
    try {
      r = f(...conv(args));
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) {
        throw new RealmError(`realm.wasm trapped in ${name}: ${e.message}`, { cause: e });
      }
      throw e;
    }
    return r64 ? Number(r) : (rPtr32 ? r >>> 0 : r);
  };
}

export class WasmCore {
  /**
   * A new instance of the core (its own memory). Instantiated asynchronously (no
   * main-thread size limits). options.threads: run matmuls and attention on this
   * many threads (default threads.defaultThreads()); more than one needs
   * realm-mt.wasm and shared memory (Node, or a cross-origin-isolated page), and
   * falls back to realm.wasm on one thread otherwise (core.threadsNote says why).
   */
  static async create(options = {}) {
    const threads = await import('./threads.js');
    const relaxed = wantRelaxedSimd(options.simd);
    const wasm32 = chooseWasmArch(options.wasm) === 'wasm32';
    const want = Math.max(1, Math.floor(Number(options.threads ?? threads.defaultThreads())));
    let note = want > 1 ? (wasm32 ? 'the wasm32 build runs on one thread' : threads.unavailable()) : null;
    if (want > 1 && !note) {
      try {
        const core = await WasmCore._instantiate(await compileCore({ threads: true, relaxed }), true);
        try {
          await threads.setThreads(core, want);
          return core;
        } catch (e) {
          core.close();
          throw e;
        }
      } catch (e) {
        note = `wasm threads failed (${e.message}); running on one thread`;
      }
    }
    const core = await WasmCore._instantiate(await compileCore({ relaxed, wasm32 }), false);
    core.threadsNote = note;
    return core;
  }

  static async _instantiate({ module, sigs, relaxed, note, arch, file }, mt) {
    let core = null;
    let memory = null;
    const imports = { env: {} };
    for (const imp of WebAssembly.Module.imports(module)) {
      if (mt && imp.module === 'env' && imp.name === 'memory') {
        const { sharedMemory } = await import('./threads.js');
        memory = imports.env.memory = sharedMemory(sigs.memoryMinPages || 256);
      } else if (imp.module === 'env' && imp.name === 'host_log') {
        imports.env.host_log = (ptr, len) => {
          if (core && typeof console !== 'undefined') console.error(core.readString(Number(ptr), Number(len)));
        };
      } else {
        throw new RealmError(`realm.wasm imports ${imp.module}.${imp.name}, which this host does not provide`);
      }
    }
    const instance = await WebAssembly.instantiate(module, imports);
    core = new WasmCore(instance, sigs, memory, module);
    core.simd = relaxed ? 'relaxed' : 'simd128';
    core.simdNote = note || null;
    core.arch = arch || 'wasm64';   // 'wasm64' (Memory64) or 'wasm32'
    core.file = file || null;        // which of build.py's modules runs
    return core;
  }

  constructor(instance, sigs, memory = null, module = null) {
    this.instance = instance;
    this.exports = instance.exports;
    this.memory = memory || this.exports.memory;
    this.module = module;
    this.shared = !!memory;   // realm-mt.wasm over a shared memory
    this.workers = [];        // threads.js: this core's worker threads
    this.threadsNote = null;  // why there are no threads, when there are none
    this.simd = 'simd128';    // the kernels' instruction set: 'relaxed' (relaxed SIMD) or 'simd128'
    this.simdNote = null;     // why a relaxed build was wanted but not used
    this.sigs = sigs;
    this.f = {};
    for (const [name, val] of Object.entries(this.exports)) {
      if (typeof val === 'function') this.f[name] = wrapExport(name, val, sigs && sigs[name]);
    }
    const abi = this.f.realm_abi_version ? this.f.realm_abi_version() : 0;
    if (abi !== ABI_VERSION) {
      throw new RealmError(`realm.wasm speaks realm ABI ${abi}; this host speaks ${ABI_VERSION} (rebuild it with \`python build.py\`)`);
    }
  }

  has(name) { return typeof this.f[name] === 'function'; }

  /** Threads running this core's matmuls and attention (1 + workers). */
  get threads() { return 1 + this.workers.length; }

  /** Run on n threads from now on; resolves to the count in effect (1 without realm-mt.wasm). */
  async setThreads(n) {
    if (!this.shared) return 1;
    const { setThreads } = await import('./threads.js');
    return setThreads(this, n);
  }

  /** Stop this core's worker threads (the instance itself goes with its last reference). */
  close() {
    if (this.workers.length) {
      this.f.realm_threads_stop();
      for (const w of this.workers) w.terminate();
      for (const w of this.workers) this.free(w.stack);
      this.workers = [];
    }
  }

  /** Call an export by name (i64 args as Number/BigInt, i64 results as Number). */
  call(name, ...args) {
    const f = this.f[name];
    if (!f) throw new RealmError(`realm.wasm has no export ${name} (rebuild with \`python build.py\`)`);
    return f(...args);
  }

  lastError() {
    const p = this.f.realm_last_error();
    return p ? this.readCString(p) : '';
  }

  /** The core's last failure as the error class its kind maps to; context goes before the message. */
  error(context = '') {
    const msg = this.lastError() || 'unknown error';
    const Kind = BY_KIND[ERROR_KINDS[this.f.realm_last_error_kind()]] || RealmError;
    return new Kind(context ? `${context}: ${msg}` : msg);
  }

  // ---------------------------------------------------------------- memory
  memoryBytes() { return this.memory.buffer.byteLength; }

  /** A Uint8Array view of n bytes at ptr (valid until the memory grows). */
  u8(ptr, n) {
    const buf = this.memory.buffer;
    if (ptr < 0 || ptr + n > buf.byteLength) throw new RealmError(`view of ${n} bytes at 0x${ptr.toString(16)} is outside wasm memory`);
    return new Uint8Array(buf, ptr, n);
  }

  i32(ptr, n) { return new Int32Array(this.memory.buffer, ptr, n); }
  f32(ptr, n) { return new Float32Array(this.memory.buffer, ptr, n); }
  dv(ptr, n) { return new DataView(this.memory.buffer, ptr, n); }
  /** Bytes of one pointer or handle in memory: 8 (Memory64) or 4 (wasm32). */
  get ptrBytes() { return this.arch === 'wasm32' ? 4 : 8; }
  /** handles[i] at byte 0 + i * ptrBytes of a DataView, as the core reads an array of handles. */
  setHandles(dv, handles) {
    handles.forEach((h, i) => {
      if (this.ptrBytes === 4) dv.setUint32(4 * i, Number(h), true);
      else dv.setBigUint64(8 * i, BigInt(h), true);
    });
  }

  /** A copy of n bytes at ptr. */
  read(ptr, n) { return n ? this.u8(ptr, n).slice() : new Uint8Array(0); }

  // TextDecoder refuses views of a SharedArrayBuffer (realm-mt.wasm): decode copies
  readString(ptr, n) { return n ? dec.decode(this.read(ptr, n)) : ''; }

  readCString(ptr, limit = 1 << 20) {
    const buf = new Uint8Array(this.memory.buffer);
    let end = ptr;
    const stop = Math.min(buf.length, ptr + limit);
    while (end < stop && buf[end] !== 0) end++;
    return dec.decode(buf.slice(ptr, end));
  }

  write(ptr, bytes) { if (bytes.length) this.u8(ptr, bytes.length).set(bytes); }

  readI32(ptr, n) { return n ? Array.from(this.i32(ptr, n)) : []; }

  writeI32(ptr, values) { if (values.length) this.i32(ptr, values.length).set(values); }

  alloc(n) {
    const p = this.f.realm_alloc(Math.max(1, n));
    if (!p) throw new OutOfMemoryError(`realm.wasm could not allocate ${n} bytes: ${this.lastError() || 'out of memory'}`);
    return p;
  }

  free(p) { if (p) this.f.realm_free(p); }

  /** UTF-8 bytes of text, NUL-terminated, in a fresh allocation: [ptr, byteLength]. */
  allocString(text) {
    const b = typeof text === 'string' ? enc.encode(text) : text;
    const p = this.alloc(b.length + 1);
    this.write(p, b);
    this.u8(p + b.length, 1)[0] = 0;
    return [p, b.length];
  }
}
