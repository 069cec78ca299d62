// The JS half of the Pyodide host (realm_web/pyodide_host.py): realm.wasm
// instances and model sources that Python drives.
//
// Instances: one compiled Module, a fresh instance per model (CoreModel wants
// its own), made synchronously because Python asks for them synchronously.
// The export signatures come from the binary (parseSignatures of the JS SDK's
// js-sdk/src/core.js). Python calls the raw exports itself (i64 as BigInt) and
// reads memory through fresh views; it needs only {exports, memory, sigs, arch}.
// arch: "wasm64" (realm.wasm, Memory64) or "wasm32" (realm32.wasm, where the engine
// has no Memory64); the only difference Python sees is the pointer width.
//
// Model bytes never pass through Python. Two kinds of source:
//  * with JSPI (Chromium): the SDK's own sources (fetch streaming, the model
//    cache, File/Blob streams). Their methods return Promises; Python blocks on
//    them with pyodide.ffi.run_sync, so Python must be entered with
//    callPromising (see pyodide-worker.js).
//  * without JSPI: synchronous XHR with Range (URLs) or FileReaderSync (Files),
//    both allowed in workers, or fs.readSync (Node).
// Either way the tensor data is written straight into the wasm memory in chunks.

export const CHUNK = 8 << 20;

export const hasJSPI = typeof WebAssembly.Suspending === "function" && typeof WebAssembly.promising === "function";

const sdkURL = (base, file) => new URL(file, new URL(base, globalThis.location?.href)).href;

/**
 * Compile realm.wasm once (streaming from a URL, or from bytes) and return a factory of
 * fresh cores. From a URL .../realm.wasm the build is picked by feature detection, as the
 * JS SDK does (js-sdk/src/core.js chooseWasmArch; `arch`: "auto" (default), "wasm64" or
 * "wasm32"): realm32.wasm beside it where the engine has no Memory64 (Safari, Node 20);
 * and where the engine has relaxed SIMD, that build's relaxed twin (realm-relaxed.wasm,
 * realm32-relaxed.wasm: same results) is tried first. The factory's simd says which SIMD
 * runs ("relaxed" or "simd128"), simdNote why not relaxed, arch the pointer width of the
 * module compiled ("wasm64" or "wasm32", read from the module itself).
 */
export async function coreFactory(wasm, sdkBase = "/js-sdk/src/", { arch: wantArch } = {}) {
  const { parseSignatures, relaxedSimdSupported, chooseWasmArch } = await import(sdkURL(sdkBase, "core.js"));
  const compileUrl = async (url) => {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
    return Promise.all([WebAssembly.compileStreaming(resp.clone()), resp.arrayBuffer()]);
  };
  let module, bytes, simd = "simd128", simdNote = null;
  if (wasm instanceof ArrayBuffer || ArrayBuffer.isView(wasm)) {
    bytes = wasm;
    module = await WebAssembly.compile(bytes);
  } else {
    let url = new URL(wasm, globalThis.location?.href);
    const named = /\/realm\.wasm$/.test(url.pathname);   // the default name: pick its siblings
    if (named && chooseWasmArch(wantArch) === "wasm32") {
      url = new URL(url.pathname.replace(/realm\.wasm$/, "realm32.wasm") + url.search, url);
    }
    const relaxedUrl = named && relaxedSimdSupported()
      ? new URL(url.pathname.replace(/\.wasm$/, "-relaxed.wasm") + url.search, url) : null;
    if (relaxedUrl) {
      try {
        [module, bytes] = await compileUrl(relaxedUrl);
        simd = "relaxed";
      } catch (e) {
        simdNote = `realm-relaxed.wasm: ${e.message}`;
      }
    }
    if (!module) [module, bytes] = await compileUrl(url);
  }
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength);
  const sigs = parseSignatures(u8);
  if (!sigs || !sigs.realm_alloc) throw new Error("could not read realm.wasm's export signatures");
  const arch = sigs.realm_free?.params[0] === "i32" ? "wasm32" : "wasm64";   // realm_free(void *): the pointer width
  return Object.assign(() => Object.assign(newCore(module, sigs), { simd, arch }), { simd, simdNote, arch });
}

/** One instance: {instance, exports, memory, sigs, u8(ptr, n)}. */
export function newCore(module, sigs) {
  const core = { sigs };
  const env = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === "env" && imp.name === "host_log") {
      env.host_log = (ptr, len) => console.log(new TextDecoder().decode(core.u8(Number(ptr), Number(len)).slice()));
    } else {
      throw new Error(`realm.wasm imports ${imp.module}.${imp.name}, which this host does not provide`);
    }
  }
  core.instance = new WebAssembly.Instance(module, { env });  // fine in a worker (and realm.wasm is small)
  core.exports = core.instance.exports;
  core.memory = core.exports.memory;
  // a fresh view per access: memory.buffer is replaced whenever the memory grows
  core.u8 = (ptr, n) => new Uint8Array(core.memory.buffer, ptr, n);
  return core;
}

function writeChunks(core, dst, n, readChunk, onProgress) {
  for (let pos = 0; pos < n;) {
    const k = Math.min(CHUNK, n - pos);
    const data = readChunk(pos, k);
    if (data.byteLength !== k) throw new Error(`short read: ${data.byteLength} of ${k} bytes`);
    core.u8(dst + pos, k).set(data);  // a fresh view: the memory may have grown
    pos += k;
    onProgress?.(pos, n);
  }
}

// ------------------------------------------------------- JSPI: the SDK's sources

/**
 * A source for Python over any SDK source (sources.asSource: a URL with the model
 * cache, a File/Blob, bytes). The SDK reads sequentially; Python asks for the
 * header (read(0, n), n may grow) and then, once, for [offset, offset + n) of
 * the tensor data, so the header bytes are kept and everything else streams.
 */
export async function sdkSource(what, { sdkBase = "/js-sdk/src/", onProgress, cache } = {}) {
  const { asSource } = await import(sdkURL(sdkBase, "sources.js"));
  const src = await asSource(what, cache === undefined ? {} : { cache });
  const reader = await src.open({ onProgress: (p) => onProgress?.(p.loaded, p.total) });
  let head = new Uint8Array(0);
  let closed = false;
  const fill = async (end) => {
    if (end <= head.length) return;
    const h = new Uint8Array(end);
    h.set(head);
    let have = head.length;
    while (have < end) {
      const c = await reader.read(end - have);
      if (!c) throw new Error(`${src.name}: the file ended after ${have} bytes`);
      h.set(c, have);
      have += c.length;
    }
    head = h;
  };
  return {
    name: src.name, size: reader.size, identity: src.identity, fromCache: !!reader.fromCache,
    async read(offset, n) {
      await fill(offset + n);
      return head.slice(offset, offset + n);
    },
    async copyTo(core, dst, offset, n) {
      let done = 0;
      if (offset < head.length) {
        done = Math.min(n, head.length - offset);
        core.u8(dst, done).set(head.subarray(offset, offset + done));
      } else {
        await reader.skip(offset - head.length);
      }
      head = new Uint8Array(0);
      while (done < n) {
        const k = Math.min(CHUNK, n - done);
        const got = await reader.readInto(core.u8(dst + done, k));
        if (got !== k) throw new Error(`${src.name}: the file ended early (${offset + done + got} of ${offset + n} bytes)`);
        done += k;
        onProgress?.(done, n);
      }
      closed = true;
      await reader.finish(true);  // a cache being written gets the rest of the file
    },
    async close() { if (!closed) { closed = true; await reader.close(); } },
  };
}

// ----------------------------------------------------- no JSPI: synchronous sources

/** A model at a URL: size and identity from one HEAD; bytes by synchronous ranged GETs. */
export async function urlSource(url, { onProgress } = {}) {
  const abs = new URL(url, globalThis.location?.href).href;
  const head = await fetch(abs, { method: "HEAD" });
  if (!head.ok) throw new Error(`${url}: HTTP ${head.status}`);
  const size = Number(head.headers.get("Content-Length"));
  const tag = head.headers.get("ETag") || head.headers.get("Last-Modified") || "";
  const get = (offset, n) => {
    const xhr = new XMLHttpRequest();
    xhr.open("GET", abs, false);
    xhr.responseType = "arraybuffer";
    xhr.setRequestHeader("Range", `bytes=${offset}-${offset + n - 1}`);
    xhr.send();
    if (xhr.status === 206) return new Uint8Array(xhr.response);
    if (xhr.status === 200) return new Uint8Array(xhr.response, offset, n);  // the server ignored Range
    throw new Error(`${url}: HTTP ${xhr.status} for bytes ${offset}-${offset + n - 1}`);
  };
  return {
    name: String(url), size, identity: `url:${abs} ${size} ${tag}`, fromCache: false,
    read: get,
    copyTo: (core, dst, offset, n) => writeChunks(core, dst, n, (pos, k) => get(offset + pos, k), onProgress),
    close() {},
  };
}

/** A File or Blob (a dropped GGUF), read with FileReaderSync. */
export function fileSource(file, { onProgress } = {}) {
  const reader = new FileReaderSync();
  const get = (offset, n) => new Uint8Array(reader.readAsArrayBuffer(file.slice(offset, offset + n)));
  return {
    name: file.name || "blob", size: file.size, identity: `file:${file.name} ${file.size} ${file.lastModified ?? ""}`,
    fromCache: false,
    read: get,
    copyTo: (core, dst, offset, n) => writeChunks(core, dst, n, (pos, k) => get(offset + pos, k), onProgress),
    close() {},
  };
}

/** A file on disk (Node), read with fs.readSync. */
export async function pathSource(path, { onProgress } = {}) {
  const fs = await import("node:fs");
  const st = fs.statSync(path);
  const fd = fs.openSync(path, "r");
  const get = (offset, n) => {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = fs.readSync(fd, out, got, n - got, offset + got);
      if (r <= 0) break;
      got += r;
    }
    return out.subarray(0, got);
  };
  return {
    name: path, size: st.size, identity: `file:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`, fromCache: false,
    read: get,
    copyTo: (core, dst, offset, n) => writeChunks(core, dst, n, (pos, k) => get(offset + pos, k), onProgress),
    close() { fs.closeSync(fd); },
  };
}

/** Install the wheels listed at wheelsURL (realm_web, jinja2, markupsafe) into Pyodide. */
export async function installWheels(pyodide, wheelsURL) {
  const base = new URL(wheelsURL, globalThis.location?.href);
  const index = await (await fetch(base)).json();
  const files = await Promise.all(index.wheels.map(async (w) => {
    const r = await fetch(new URL(w, base));
    if (!r.ok) throw new Error(`${w}: HTTP ${r.status}`);
    return r.arrayBuffer();
  }));
  for (const buf of files) pyodide.unpackArchive(buf, "wheel");
  return index.wheels;
}
