// Sequential readers over a model's bytes: the Reader interface every source opens
// (sources.js) and the model cache reads back (cache.js).
//
// Reader: { size, fromCache, read(max) -> Uint8Array|null, readInto(view) -> bytes
//           filled (fewer only at end of file), skip(n), finish(keep), close() }

/** A sequential reader over a function that returns the next chunk (or null at the end). */
export class ChunkReader {
  constructor(size, next, { tap = null, onClose = null } = {}) {
    this.size = size;
    this.fromCache = false;
    this._next = next;
    this._pending = null; // Uint8Array not yet consumed
    this._tap = tap;      // cache writer: sees every byte in order
    this._onClose = onClose;
    this.pos = 0;
  }

  async _fill() {
    while (!this._pending || this._pending.length === 0) {
      const c = await this._next();
      if (!c) return false;
      if (c.length === 0) continue;
      if (this._tap) await this._tap.write(c);
      this._pending = c;
    }
    return true;
  }

  async read(max) {
    if (!(await this._fill())) return null;
    const p = this._pending;
    const k = Math.min(max, p.length);
    const out = p.subarray(0, k);
    this._pending = p.subarray(k);
    this.pos += k;
    return out;
  }

  async readInto(view) {
    let done = 0;
    while (done < view.length) {
      if (!(await this._fill())) break;
      const p = this._pending;
      const k = Math.min(view.length - done, p.length);
      view.set(p.subarray(0, k), done);
      this._pending = p.subarray(k);
      done += k;
    }
    this.pos += done;
    return done;
  }

  async skip(n) {
    while (n > 0) {
      const c = await this.read(Math.min(n, 1 << 24));
      if (!c) break;
      n -= c.length;
    }
  }

  /** Done reading. keep: the load succeeded, so a cache being written gets the rest of the file. */
  async finish(keep) {
    if (this._tap) {
      const tap = this._tap;
      this._tap = null;
      if (keep) {
        try {
          if (this._pending && this._pending.length) { /* already written when filled */ }
          for (;;) {
            const c = await this._next();
            if (!c) break;
            await tap.write(c);
          }
          await tap.commit();
        } catch (e) {
          await tap.abort();
          throw e;
        }
      } else {
        await tap.abort();
      }
    }
    await this.close();
  }

  async close() {
    if (this._tap) { const t = this._tap; this._tap = null; await t.abort(); }
    if (this._onClose) { const f = this._onClose; this._onClose = null; await f(); }
  }
}

/** Node: a file read with positioned reads straight into the destination view. */
export class NodeFileReader {
  constructor(fh, size) {
    this.fh = fh;
    this.size = size;
    this.pos = 0;
    this.fromCache = false;
  }

  async read(max) {
    const n = Math.min(max, this.size - this.pos);
    if (n <= 0) return null;
    const buf = new Uint8Array(n);
    const k = await this.readInto(buf);
    return k ? buf.subarray(0, k) : null;
  }

  async readInto(view) {
    let done = 0;
    while (done < view.length) {
      const want = Math.min(view.length - done, 1 << 30);
      const { bytesRead } = await this.fh.read(view, done, want, this.pos);
      if (!bytesRead) break;
      done += bytesRead;
      this.pos += bytesRead;
    }
    return done;
  }

  async skip(n) { this.pos = Math.min(this.size, this.pos + n); }
  async finish() { await this.close(); }
  async close() { if (this.fh) { const fh = this.fh; this.fh = null; await fh.close(); } }
}

export function blobReader(blob) {
  const r = blob.stream().getReader();
  let done = false;
  return new ChunkReader(blob.size, async () => {
    if (done) return null;
    const { value, done: d } = await r.read();
    if (d) { done = true; return null; }
    return value;
  }, { onClose: async () => { if (!done) { done = true; try { await r.cancel(); } catch { /* ignore */ } } } });
}
