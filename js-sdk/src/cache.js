// The model cache: a model fetched from a URL is kept, so the next load of that URL
// reads no bytes from the network. Backends:
//   browser: the Origin Private File System (default), or the Cache API
//   Node:    files under ${REALM_CACHE:-~/.cache/realm-web}/http
// Entries are written while the model streams into wasm memory (never buffered
// whole in JS) and become visible only once complete.
//
// Public face: Realm.cache = { list(), has(url), delete(url), clear(), backend() }.
import { RealmError } from './errors.js';
import { isNode } from './env.js';
import { blobReader } from './readers.js';

const DIR_NAME = 'realm-web-models';

async function urlKey(url) {
  const data = new TextEncoder().encode(url);
  if (globalThis.crypto && globalThis.crypto.subtle) {
    const h = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', data));
    return Array.from(h.subarray(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
  }
  let h = 0xcbf29ce484222325n; // FNV-1a 64 where WebCrypto is missing (insecure contexts)
  for (const b of data) { h ^= BigInt(b); h = (h * 0x100000001b3n) & 0xffffffffffffffffn; }
  return h.toString(16).padStart(16, '0');
}

function absUrl(url) {
  return new URL(String(url), globalThis.location ? globalThis.location.href : undefined).href;
}

// ------------------------------------------------------------------ Node: files

class NodeFsCache {
  constructor(dir) { this.dir = dir; this.kind = 'fs'; }

  static async create() {
    const os = await import('node:os');
    const path = await import('node:path');
    const root = process.env.REALM_CACHE || path.join(os.homedir(), '.cache', 'realm-web');
    return new NodeFsCache(path.join(root, 'http'));
  }

  async _paths(url) {
    const path = await import('node:path');
    const k = await urlKey(url);
    return { data: path.join(this.dir, `${k}.gguf`), meta: path.join(this.dir, `${k}.json`) };
  }

  async _meta(file) {
    const fs = await import('node:fs/promises');
    try { return JSON.parse(await fs.readFile(file, 'utf8')); } catch { return null; }
  }

  async open(url) {
    const fs = await import('node:fs/promises');
    const p = await this._paths(url);
    const meta = await this._meta(p.meta);
    if (!meta || meta.url !== url) return null;
    let fh;
    try { fh = await fs.open(p.data, 'r'); } catch { return null; }
    const st = await fh.stat();
    if (st.size !== meta.size) { await fh.close(); return null; }
    let pos = 0;
    const size = meta.size;
    // positioned reads straight into the destination, as for a local file
    return {
      size, fromCache: true, pos: 0,
      async read(max) {
        const n = Math.min(max, size - pos);
        if (n <= 0) return null;
        const b = new Uint8Array(n);
        const k = await this.readInto(b);
        return b.subarray(0, k);
      },
      async readInto(view) {
        let done = 0;
        while (done < view.length) {
          const { bytesRead } = await fh.read(view, done, Math.min(view.length - done, 1 << 30), pos);
          if (!bytesRead) break;
          done += bytesRead; pos += bytesRead;
        }
        this.pos = pos;
        return done;
      },
      async skip(n) { pos = Math.min(size, pos + n); },
      async finish() { await this.close(); },
      async close() { if (fh) { const f = fh; fh = null; await f.close(); } },
    };
  }

  async writer(url, size, meta = {}) {
    const fs = await import('node:fs/promises');
    await fs.mkdir(this.dir, { recursive: true });
    const p = await this._paths(url);
    const tmp = `${p.data}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const fh = await fs.open(tmp, 'w');
    let written = 0;
    let closed = false;
    return {
      async write(chunk) {
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
        written += chunk.length;
      },
      async commit() {
        closed = true;
        await fh.close();
        if (size !== undefined && written !== size) { await fs.rm(tmp, { force: true }); throw new RealmError(`${url}: got ${written} bytes, expected ${size}`); }
        await fs.rename(tmp, p.data);
        const m = { url, size: written, storedAt: Date.now(), etag: meta.etag || null, lastModified: meta.lastModified || null };
        await fs.writeFile(`${p.meta}.tmp`, JSON.stringify(m));
        await fs.rename(`${p.meta}.tmp`, p.meta);
      },
      async abort() {
        if (!closed) { closed = true; await fh.close().catch(() => {}); }
        await fs.rm(tmp, { force: true });
      },
    };
  }

  async list() {
    const fs = await import('node:fs/promises');
    const path = await import('node:path');
    let names = [];
    try { names = await fs.readdir(this.dir); } catch { return []; }
    const out = [];
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      const m = await this._meta(path.join(this.dir, n));
      if (m && m.url) out.push({ url: m.url, size: m.size, storedAt: m.storedAt, etag: m.etag, lastModified: m.lastModified });
    }
    return out.sort((a, b) => a.storedAt - b.storedAt);
  }

  async delete(url) {
    const fs = await import('node:fs/promises');
    const p = await this._paths(url);
    const had = !!(await this._meta(p.meta));
    await fs.rm(p.meta, { force: true });
    await fs.rm(p.data, { force: true });
    return had;
  }

  async clear() {
    const fs = await import('node:fs/promises');
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ browser: OPFS

class OpfsCache {
  constructor() { this.kind = 'opfs'; this._dir = null; }

  static available() {
    return typeof navigator !== 'undefined' && !!(navigator.storage && navigator.storage.getDirectory);
  }

  async dir() {
    if (!this._dir) {
      const root = await navigator.storage.getDirectory();
      this._dir = await root.getDirectoryHandle(DIR_NAME, { create: true });
    }
    return this._dir;
  }

  async _meta(name) {
    try {
      const d = await this.dir();
      const f = await (await d.getFileHandle(name)).getFile();
      return JSON.parse(await f.text());
    } catch { return null; }
  }

  async open(url) {
    const k = await urlKey(url);
    const meta = await this._meta(`${k}.json`);
    if (!meta || meta.url !== url) return null;
    try {
      const d = await this.dir();
      const file = await (await d.getFileHandle(`${k}.gguf`)).getFile();
      if (file.size !== meta.size) return null;
      const r = blobReader(file);
      r.fromCache = true;
      return r;
    } catch { return null; }
  }

  async writer(url, size, meta = {}) {
    const d = await this.dir();
    const k = await urlKey(url);
    await d.removeEntry(`${k}.json`).catch(() => {});
    const fh = await d.getFileHandle(`${k}.gguf`, { create: true });
    const w = await fh.createWritable({ keepExistingData: false });
    let written = 0;
    let closed = false;
    return {
      async write(chunk) { await w.write(chunk); written += chunk.length; },
      async commit() {
        closed = true;
        await w.close();
        if (size !== undefined && written !== size) {
          await d.removeEntry(`${k}.gguf`).catch(() => {});
          throw new RealmError(`${url}: got ${written} bytes, expected ${size}`);
        }
        const mh = await d.getFileHandle(`${k}.json`, { create: true });
        const mw = await mh.createWritable();
        await mw.write(JSON.stringify({ url, size: written, storedAt: Date.now(), etag: meta.etag || null, lastModified: meta.lastModified || null }));
        await mw.close();
      },
      async abort() {
        if (!closed) { closed = true; await w.abort().catch(() => {}); }
        await d.removeEntry(`${k}.gguf`).catch(() => {});
      },
    };
  }

  async list() {
    const d = await this.dir();
    const out = [];
    for await (const [name] of d.entries()) {
      if (!name.endsWith('.json')) continue;
      const m = await this._meta(name);
      if (m && m.url) out.push({ url: m.url, size: m.size, storedAt: m.storedAt, etag: m.etag, lastModified: m.lastModified });
    }
    return out.sort((a, b) => a.storedAt - b.storedAt);
  }

  async delete(url) {
    const d = await this.dir();
    const k = await urlKey(url);
    const had = !!(await this._meta(`${k}.json`));
    await d.removeEntry(`${k}.json`).catch(() => {});
    await d.removeEntry(`${k}.gguf`).catch(() => {});
    return had;
  }

  async clear() {
    const root = await navigator.storage.getDirectory();
    this._dir = null;
    await root.removeEntry(DIR_NAME, { recursive: true }).catch(() => {});
  }
}

// ------------------------------------------------------------------ browser: Cache API

class CacheApiCache {
  constructor() { this.kind = 'cache-api'; }

  static available() { return typeof caches !== 'undefined'; }

  async open(url) {
    const c = await caches.open(DIR_NAME);
    const res = await c.match(url);
    if (!res) return null;
    const blob = await res.blob(); // disk-backed in Chromium: no copy in JS memory
    const r = blobReader(blob);
    r.fromCache = true;
    return r;
  }

  async writer(url, size, meta = {}) {
    const c = await caches.open(DIR_NAME);
    let ctrl;
    let wake = null;
    let failed = null;
    const stream = new ReadableStream({
      start(cc) { ctrl = cc; },
      pull() { if (wake) { const w = wake; wake = null; w(); } },
      cancel(reason) { failed = reason || new Error('cache write cancelled'); if (wake) { const w = wake; wake = null; w(); } },
    }, { highWaterMark: 8 });
    const headers = { 'content-type': 'application/octet-stream', 'x-realm-stored': String(Date.now()) };
    if (size !== undefined) headers['x-realm-size'] = String(size);
    if (meta.etag) headers['x-realm-etag'] = meta.etag;
    const put = c.put(url, new Response(stream, { headers }));
    put.catch((e) => { failed = failed || e; if (wake) { const w = wake; wake = null; w(); } });
    return {
      async write(chunk) {
        if (failed) throw failed;
        ctrl.enqueue(chunk);
        while (ctrl.desiredSize <= 0 && !failed) await new Promise((r) => { wake = r; });
        if (failed) throw failed;
      },
      async commit() { ctrl.close(); await put; },
      async abort() {
        try { ctrl.error(new Error('aborted')); } catch { /* closed */ }
        await put.catch(() => {});
        await c.delete(url).catch(() => {});
      },
    };
  }

  async list() {
    const c = await caches.open(DIR_NAME);
    const out = [];
    for (const req of await c.keys()) {
      const res = await c.match(req);
      out.push({ url: req.url, size: Number(res.headers.get('x-realm-size')) || undefined, storedAt: Number(res.headers.get('x-realm-stored')) || undefined, etag: res.headers.get('x-realm-etag') });
    }
    return out;
  }

  async delete(url) { return (await caches.open(DIR_NAME)).delete(url); }

  async clear() { await caches.delete(DIR_NAME); }
}

// ------------------------------------------------------------------ selection

const backends = {};

/**
 * The cache backend for a mode: true/'auto' (OPFS, else the Cache API; files in Node),
 * 'opfs', 'cache-api', 'fs', or an object with the backend methods. null if none.
 */
export async function getCache(mode = true) {
  if (mode === false || mode == null) return null;
  if (typeof mode === 'object') return mode;
  let kind = mode;
  if (mode === true || mode === 'auto') {
    kind = isNode ? 'fs' : OpfsCache.available() ? 'opfs' : CacheApiCache.available() ? 'cache-api' : null;
  }
  if (!kind) return null;
  if (!backends[kind]) {
    if (kind === 'fs') backends[kind] = await NodeFsCache.create();
    else if (kind === 'opfs') backends[kind] = new OpfsCache();
    else if (kind === 'cache-api') backends[kind] = new CacheApiCache();
    else throw new RealmError(`unknown cache kind ${kind} (use 'auto', 'opfs', 'cache-api', 'fs' or false)`);
  }
  return backends[kind];
}

async function must(mode) {
  const c = await getCache(mode);
  if (!c) throw new RealmError('no model cache is available here (no OPFS, no Cache API)');
  return c;
}

/** Realm.cache: the models kept from URLs. `mode` picks a backend (default: the automatic one). */
export const modelCache = {
  /** [{url, size, storedAt, etag, lastModified}] of every complete entry. */
  async list(mode) { const c = await getCache(mode ?? true); return c ? c.list() : []; },
  async has(url, mode) { return (await this.list(mode)).some((e) => e.url === absUrl(url)); },
  /** Remove one URL's entry; true if there was one. */
  async delete(url, mode) { return (await must(mode ?? true)).delete(absUrl(url)); },
  /** Remove every entry. */
  async clear(mode) { const c = await getCache(mode ?? true); if (c) await c.clear(); },
  /** Which backend the automatic mode uses here: 'opfs', 'cache-api', 'fs' or null. */
  async backend() { const c = await getCache(true); return c ? c.kind : null; },
};

