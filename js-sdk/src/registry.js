// RealmRegistry: several models held by id. Loading the same source twice (in one
// registry or in two) reuses one host-side copy of the weights: each entry is its
// own Realm (session) on the shared model (store.js).
import { RealmError } from './errors.js';
import { Realm } from './realm.js';

export class RealmRegistry {
  /** defaults: options given to every load (device, nCtx, worker, cache, ...). */
  constructor(defaults = {}) {
    this.defaults = defaults;
    this._realms = new Map();   // id -> Realm (or RealmWorker)
    this._pending = new Map();  // id -> Promise while loading
  }

  /** Load `source` under `id` (an id in use is an error: unload it first). */
  async load(id, source, options = {}) {
    if (typeof id !== 'string' || !id) throw new RealmError('a registry id is a non-empty string');
    if (this._realms.has(id) || this._pending.has(id)) throw new RealmError(`a model with id ${JSON.stringify(id)} is already loaded`);
    const p = Realm.load(source, { ...this.defaults, ...options, id });
    this._pending.set(id, p);
    try {
      const realm = await p;
      this._realms.set(id, realm);
      return realm;
    } finally {
      this._pending.delete(id);
    }
  }

  /** The Realm under id, or undefined. */
  get(id) { return this._realms.get(id); }

  has(id) { return this._realms.has(id); }

  /** [{id, source, device, nCtx, worker}] of every loaded entry. */
  list() {
    return [...this._realms.entries()].map(([id, r]) => ({ id, source: r.source, device: r.device, nCtx: r.nCtx, worker: !!r.isWorker }));
  }

  /** Unload one entry; true if it was there. */
  async unload(id) {
    const r = this._realms.get(id);
    if (!r) return false;
    this._realms.delete(id);
    await r.unload();
    return true;
  }

  /** Unload every entry. */
  async unloadAll() {
    const ids = [...this._realms.keys()];
    await Promise.all(ids.map((id) => this.unload(id)));
  }

  get size() { return this._realms.size; }
}
