// Where a model's bytes come from: a URL, a File/Blob, an ArrayBuffer/typed array,
// or (Node) a file path. Every source is read sequentially through a Reader, so
// the loader can stream the tensor data straight into wasm memory in chunks and
// never hold a second whole copy of the weights in a JS ArrayBuffer (readers.js).
import { RealmError } from './errors.js';
import { isNode } from './env.js';
import { getCache } from './cache.js';
import { ChunkReader, NodeFileReader, blobReader } from './readers.js';

export { ChunkReader, blobReader } from './readers.js';

// ----------------------------------------------------------------- identity

const objIds = new WeakMap();
let nextObjId = 1;
/** A stable string id for an object (the same Blob/ArrayBuffer gives the same id). */
export function objectId(obj) {
  let id = objIds.get(obj);
  if (!id) { id = nextObjId++; objIds.set(obj, id); }
  return id;
}

function isBlob(x) { return typeof Blob !== 'undefined' && x instanceof Blob; }

function looksLikeUrl(s) { return /^(https?|blob|data|file):/i.test(s); }

/** Resolve what the user passed into a Source. */
export async function asSource(src, opts = {}) {
  if (src && typeof src === 'object' && typeof src.open === 'function' && src.identity) return src; // already a source
  if (typeof src === 'string' || src instanceof URL) {
    const s = String(src);
    if (isNode && (src instanceof URL ? src.protocol === 'file:' : (!looksLikeUrl(s) || s.startsWith('file:')))) {
      const { fileURLToPath } = await import('node:url');
      return FileSource.create(s.startsWith('file:') ? fileURLToPath(s) : s);
    }
    const base = globalThis.location ? globalThis.location.href : undefined;
    let url;
    try { url = new URL(s, base).href; } catch { throw new RealmError(`not a URL or a path: ${s}`); }
    return new UrlSource(url, opts);
  }
  if (isBlob(src)) return new BlobSource(src, opts.identity);
  if (src instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && src instanceof SharedArrayBuffer)) {
    return new BytesSource(new Uint8Array(src), opts.identity || `obj:${objectId(src)}:0:${src.byteLength}`);
  }
  if (ArrayBuffer.isView(src)) {
    const u8 = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    return new BytesSource(u8, opts.identity || `obj:${objectId(src.buffer)}:${src.byteOffset}:${src.byteLength}`);
  }
  throw new RealmError('a model source is a URL, a File/Blob, an ArrayBuffer/Uint8Array, or (Node) a file path');
}

// ----------------------------------------------------------------- sources

export class FileSource {
  static async create(path) {
    const fs = await import('node:fs/promises');
    const nodePath = await import('node:path');
    let st;
    try {
      st = await fs.stat(path, { bigint: true });
    } catch (e) {
      if (e.code === 'ENOENT') throw new RealmError(`no such model file: ${path}`);
      throw e;
    }
    if (!st.isFile()) throw new RealmError(`not a file: ${path}`);
    const s = new FileSource();
    s.kind = 'file';
    s.path = nodePath.resolve(path);
    s.name = s.path;
    s.size = Number(st.size);
    // the same file reached by another path, or rewritten in place, is told apart
    s.identity = `file:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
    return s;
  }

  async open() {
    const fs = await import('node:fs/promises');
    const fh = await fs.open(this.path, 'r');
    return new NodeFileReader(fh, this.size);
  }
}

export class BlobSource {
  constructor(blob, identity) {
    this.kind = 'blob';
    this.blob = blob;
    this.name = blob.name || 'blob';
    this.size = blob.size;
    this.identity = identity || `obj:${objectId(blob)}`;
  }

  async open() { return blobReader(this.blob); }
}

export class BytesSource {
  constructor(u8, identity) {
    this.kind = 'bytes';
    this.bytes = u8;
    this.name = 'buffer';
    this.size = u8.length;
    this.identity = identity;
  }

  async open() {
    let given = false;
    return new ChunkReader(this.size, async () => {
      if (given) return null;
      given = true;
      return this.bytes;
    });
  }
}

export class UrlSource {
  constructor(url, opts = {}) {
    this.kind = 'url';
    this.url = url;
    this.name = url;
    this.size = undefined; // known after open
    this.identity = `url:${url}`;
    this.cacheMode = opts.cache === undefined ? true : opts.cache;
    this.fetchInit = opts.fetchOptions || {};
  }

  async open({ signal, onProgress } = {}) {
    const cacheable = this.cacheMode !== false && !this.url.startsWith('blob:') && !this.url.startsWith('data:');
    const cache = cacheable ? await getCache(this.cacheMode) : null;
    if (cache) {
      const hit = await cache.open(this.url);
      if (hit) { hit.fromCache = true; this.size = hit.size; return hit; }
    }
    const res = await fetch(this.url, { ...this.fetchInit, signal });
    if (!res.ok) throw new RealmError(`could not fetch ${this.url}: HTTP ${res.status} ${res.statusText}`);
    if (!res.body) throw new RealmError(`${this.url}: the response has no body`);
    const enc = (res.headers.get('content-encoding') || 'identity').toLowerCase();
    const len = res.headers.get('content-length');
    let size = len != null && enc === 'identity' ? Number(len) : NaN;
    const body = res.body.getReader();
    let ended = false;
    const next = async () => {
      if (ended) return null;
      if (signal && signal.aborted) throw signal.reason;
      const { value, done } = await body.read();
      if (done) { ended = true; return null; }
      return value;
    };
    const cancel = async () => { if (!ended) { ended = true; try { await body.cancel(); } catch { /* ignore */ } } };
    const meta = { etag: res.headers.get('etag'), lastModified: res.headers.get('last-modified') };
    if (!Number.isFinite(size)) {
      // No usable Content-Length: the core needs the file size up front. Download
      // into the cache first (or, without a cache, into memory) and read from there.
      if (cache) {
        const w = await cache.writer(this.url, undefined, meta);
        let got = 0;
        try {
          for (let c; (c = await next());) {
            await w.write(c);
            got += c.length;
            if (onProgress) onProgress({ loaded: got, total: undefined, phase: 'download' });
          }
          await w.commit(got);
        } catch (e) { await w.abort(); await cancel(); throw e; }
        const hit = await cache.open(this.url);
        if (!hit) throw new RealmError(`${this.url}: cached download vanished`);
        this.size = hit.size;
        return hit;
      }
      const parts = [];
      let got = 0;
      for (let c; (c = await next());) {
        parts.push(c);
        got += c.length;
        if (onProgress) onProgress({ loaded: got, total: undefined, phase: 'download' });
      }
      this.size = got;
      let i = 0;
      return new ChunkReader(got, async () => (i < parts.length ? parts[i++] : null));
    }
    this.size = size;
    const tap = cache ? await cache.writer(this.url, size, meta) : null;
    return new ChunkReader(size, next, { tap, onClose: cancel });
  }
}
