// Host-side model storage: one loaded copy of each model per JS realm (page, worker,
// Node process). Every Realm and registry that opens the same source gets the same
// CoreModel (one wasm instance holding the weights) and adds only its own session.
// Sources are identified by URL, by file (device, inode, size, mtime), or by object
// identity (the same Blob / ArrayBuffer). Refcounted: the last release frees.
import { CoreModel } from './model.js';
import { asSource } from './sources.js';
import { abortReason as abortError } from './abort.js';

const entries = new Map(); // key -> { key, promise, model, refs, listeners, waiting, ctrl }

/**
 * The model for a source, loading it on first use. opts: { onProgress, signal,
 * vocabOnly, cache, identity }. Concurrent acquisitions of one source share one load;
 * the load is cancelled only when every waiter has aborted.
 */
export async function acquire(source, opts = {}) {
  const src = await asSource(source, opts);
  const key = src.identity + (opts.gpuDevice ? '#webgpu' : opts.vocabOnly ? '#vocab' : '');
  let e = entries.get(key);
  if (e && e.model) {
    e.refs++;
    if (opts.onProgress) opts.onProgress({ loaded: e.model.size, total: e.model.size });
    if (opts.threads != null && e.model.core) await e.model.core.setThreads(opts.threads); // per model
    return e.model;
  }
  if (!e) {
    const ctrl = new AbortController();
    e = { key, model: null, refs: 0, listeners: new Set(), waiting: 0, ctrl };
    e.promise = CoreModel.load(src, {
      ...opts,
      signal: ctrl.signal,
      onProgress: (p) => { for (const l of e.listeners) { try { l(p); } catch { /* a listener's bug is its own */ } } },
    });
    entries.set(key, e);
    e.promise.then((m) => {
      if (e.refs <= 0) { // every waiter gave up while the load was finishing
        if (entries.get(key) === e) entries.delete(key);
        m.free();
        return;
      }
      e.model = m;
      m._storeKey = key;
    }, () => { if (entries.get(key) === e) entries.delete(key); });
  }
  const entry = e;
  entry.refs++;
  entry.waiting++;
  if (opts.onProgress) entry.listeners.add(opts.onProgress);
  const signal = opts.signal;
  let onAbort = null;
  let counted = false;
  try {
    if (signal) signal.throwIfAborted?.();
    const aborted = signal ? new Promise((_, reject) => {
      onAbort = () => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    }) : null;
    return await (aborted ? Promise.race([entry.promise, aborted]) : entry.promise);
  } catch (err) {
    entry.refs--;
    if (signal && signal.aborted && !entry.model) {
      counted = true;
      entry.waiting--;
      if (entry.waiting === 0) { // nobody wants this load any more
        entry.ctrl.abort(abortError(signal));
        if (entries.get(key) === entry) entries.delete(key);
      }
    }
    throw err;
  } finally {
    if (!counted) entry.waiting--;
    if (opts.onProgress) entry.listeners.delete(opts.onProgress);
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/** Drop one reference; the model (and its wasm instance) is freed when the last user lets go. */
export function release(model) {
  const e = entries.get(model._storeKey);
  if (!e || e.model !== model) {
    if (!model.freed) model.free();
    return;
  }
  e.refs--;
  if (e.refs <= 0) {
    entries.delete(e.key);
    model.free();
  }
}

/** [{name, key, refs, memoryBytes, gpuBytes}] of every model currently held. */
export function loadedModels() {
  const out = [];
  for (const e of entries.values()) {
    if (e.model) out.push({ name: e.model.name, key: e.key, refs: e.refs, memoryBytes: e.model.memoryBytes(), gpuBytes: e.model.gpu ? e.model.gpu.nbytes : 0 });
  }
  return out;
}

/** Total bytes of wasm memory held by every loaded model. */
export function memoryBytes() {
  let n = 0;
  for (const e of entries.values()) if (e.model) n += e.model.memoryBytes();
  return n;
}
