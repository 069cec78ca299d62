// LoRA adapters (llama.cpp's GGUF format) in a model's instance: the JS twin of
// realm_web/lora.py. An adapter file is read once per model (keyed by the source's
// identity) into wasm memory, validated by the core (realm_lora_load) and shared by every
// session naming it; refcounted, the last release frees it.
import { RealmError } from './errors.js';
import { asSource } from './sources.js';

export const MAX_PER_SESSION = 8; // core/model.h SESSION_MAX_LORA

export function checkScale(scale) {
  const s = Number(scale);
  if (typeof scale === 'boolean' || !Number.isFinite(s)) throw new RealmError(`LoRA scale must be a finite number, got ${scale}`);
  return s;
}

/** The model's adapter for a source (path, URL, Blob, bytes), loaded on first use. */
export async function acquireLora(model, src, opts = {}) {
  const source = await asSource(src, opts);
  const cache = model._loras || (model._loras = new Map());
  const hit = cache.get(source.identity);
  if (hit && hit.handle) { hit.refs++; return hit; }
  const reader = await source.open();
  const c = model.core;
  const size = Number(reader.size);
  const buf = c.alloc(size);
  let handle = 0;
  try {
    let done = 0;
    while (done < size) {
      const got = await reader.readInto(c.u8(buf + done, size - done));
      if (!got) throw new RealmError(`LoRA adapter ${source.name || ''}: the file ended early`);
      done += got;
    }
    handle = c.call('realm_lora_load', model.handle, buf, size);
    if (!handle) throw c.error(`LoRA adapter ${source.name || ''}`);
  } finally {
    if (!handle) c.free(buf); // on success the adapter owns it
    if (typeof reader.close === 'function') await reader.close().catch(() => {});
  }
  const out = c.alloc(12);
  const dv = c.dv(out, 12);
  c.call('realm_lora_info', handle, out);
  const entry = { model, handle, refs: 1, name: source.name || String(src), identity: source.identity,
                  tensors: dv.getUint32(0, true), rank: dv.getUint32(4, true), alpha: dv.getFloat32(8, true) };
  c.free(out);
  cache.set(source.identity, entry);
  return entry;
}

export function releaseLora(entry) {
  if (--entry.refs > 0) return;
  const cache = entry.model._loras;
  if (cache) cache.delete(entry.identity);
  if (entry.handle && entry.model.handle) entry.model.core.call('realm_lora_free', entry.handle);
  entry.handle = 0;
}

/** [[src, scale] | {path|source, scale} | src] -> [[src, scale]] */
export function normalizeSpec(spec) {
  if (spec == null) return [];
  if (!Array.isArray(spec)) throw new RealmError('lora: expected an array of [source, scale] pairs');
  if (spec.length > MAX_PER_SESSION) throw new RealmError(`lora: at most ${MAX_PER_SESSION} adapters, got ${spec.length}`);
  return spec.map((x) => {
    if (Array.isArray(x)) return [x[0], checkScale(x.length > 1 ? x[1] : 1)];
    if (x && typeof x === 'object' && (x.path != null || x.source != null)) return [x.source ?? x.path, checkScale(x.scale ?? 1)];
    return [x, 1];
  });
}
