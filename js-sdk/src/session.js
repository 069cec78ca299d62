// A session: one KV cache, token history and sampler inside a model's instance.
// The JS twin of realm_web/core_model.py (Session, SamplerSettings).
import { RealmError } from './errors.js';
import { SAMPLER_DEFAULTS, packSampler } from './sampling.js';
import { EVAL_BATCH, STRUCTS, MAX_LOGPROBS } from './abi.js';

export { SAMPLER_DEFAULTS, packSampler } from './sampling.js';
export { EVAL_BATCH } from './abi.js';

// KV cache types (llama.cpp's -ctk / -ctv names) -> ggml type ids
export const KV_CACHE_TYPES = Object.freeze({ f16: 1, q8_0: 8 });

/** A KV cache type by name ('f16', 'q8_0'; default f16) or ggml id (1, 8); anything else is refused by name. */
export function kvCacheType(name) {
  if (typeof name === 'number' && Object.values(KV_CACHE_TYPES).includes(name)) return name;
  const id = KV_CACHE_TYPES[String(name ?? 'f16').toLowerCase()];
  if (id === undefined) throw new RealmError(`KV cache type '${name}': use one of ${Object.keys(KV_CACHE_TYPES).join(', ')}`);
  return id;
}

/**
 * The last sample's [[id, logprob], ...] as the core export fn (realm_session_logprobs for a
 * session handle, realm_sampler_logprobs for a sampler) writes them: into owner._lp, 1 +
 * MAX_LOGPROBS ids (i32) then as many logprobs (f32), allocated from owner.core on first use
 * (the owner frees it).
 */
export function readLogprobs(owner, fn, handle) {
  const c = owner.core;
  const k = 1 + MAX_LOGPROBS;
  if (!owner._lp) owner._lp = c.alloc(8 * k);
  const n = c.call(fn, handle, owner._lp, owner._lp + 4 * k, k);
  if (n < 0) throw c.error();
  const ids = c.i32(owner._lp, n), lps = c.f32(owner._lp + 4 * k, n);
  const out = [];
  for (let i = 0; i < n; i++) out.push([ids[i], lps[i]]);
  return out;
}

/**
 * Compile GBNF text (realm_grammar_new: a bad grammar throws a RealmError naming its line and
 * column) for model handle m, hand the grammar to use(g) (which copies what it keeps), free it.
 */
export function withGrammar(c, m, text, root, use) {
  if (typeof text !== 'string') throw new RealmError(`grammar: expected GBNF text (a string), got ${typeof text}`);
  const [tp, tl] = c.allocString(text);
  const [rp] = c.allocString(String(root));
  let g = 0;
  try {
    g = c.call('realm_grammar_new', m, tp, tl, rp);
    if (!g) throw c.error();
    return use(g);
  } finally {
    if (g) c.call('realm_grammar_free', g);
    c.free(tp);
    c.free(rp);
  }
}

export class Session {
  /** cacheTypes: {k, v}: 'f16' (default) or 'q8_0' (about half the memory; the CPU core only). */
  constructor(model, nCtx, cacheTypes = {}) {
    if (model.vocabOnly) throw new RealmError('a vocab-only model cannot run sessions');
    this.model = model;
    const c = this.core = model.core;
    this.cacheTypes = [kvCacheType(cacheTypes.k), kvCacheType(cacheTypes.v)];
    this.handle = c.call('realm_session_new_kv', model.handle, nCtx, this.cacheTypes[0], this.cacheTypes[1]);
    if (!this.handle) throw c.error(`could not create a session of ${nCtx} positions`);
    this.nCtx = nCtx;
    this._idsCap = EVAL_BATCH;
    this._ids = c.alloc(4 * EVAL_BATCH);
    this._sp = c.alloc(STRUCTS.SamplerParams.size);
    this._lp = 0; // logprobs() buffer: 1 + MAX_LOGPROBS ids (i32), then as many logprobs (f32)
  }

  close() {
    if (this.handle) {
      const c = this.core;
      c.call('realm_session_free', this.handle);
      c.free(this._ids);
      c.free(this._sp);
      c.free(this._lp);
      this._lp = 0;
      this.handle = 0;
    }
  }

  /** Every call into the core goes through here first: a closed session never passes handle 0. */
  _check() { if (!this.handle) throw new RealmError('session is closed'); }

  get nPast() { this._check(); return this.core.call('realm_session_n_past', this.handle); }

  tokens() {
    this._check();
    const c = this.core;
    const n = c.call('realm_session_n_past', this.handle);
    return c.readI32(c.call('realm_session_tokens', this.handle), n);
  }

  truncate(n) { this._check(); this.core.call('realm_session_truncate', this.handle, n); }

  /**
   * Evaluate ids at positions n_past.. . Long inputs go to the core EVAL_BATCH ids per
   * call (the core's own batch size, so results are the same as one call).
   */
  eval(ids, allLogits = false) {
    if (ids.length > EVAL_BATCH && !allLogits) {
      for (let i = 0; i < ids.length; i += EVAL_BATCH) this._eval(ids.slice(i, i + EVAL_BATCH), false);
      return;
    }
    this._eval(ids, allLogits);
  }

  _eval(ids, allLogits) {
    this._check();
    const c = this.core;
    if (ids.length > this._idsCap) {
      c.free(this._ids);
      this._ids = 0;
      this._idsCap = Math.max(ids.length, 2 * this._idsCap);
      this._ids = c.alloc(4 * this._idsCap);
    }
    c.writeI32(this._ids, ids);
    if (!c.call('realm_session_eval', this.handle, this._ids, ids.length, allLogits ? 1 : 0)) throw c.error();
  }

  /** A copy of the last eval's logits: Float32Array of rows * n_vocab. */
  logits() {
    this._check();
    const c = this.core;
    const rows = c.call('realm_session_logits_rows', this.handle);
    const p = c.call('realm_session_logits', this.handle);
    return c.f32(p, rows * this.model.info.n_vocab).slice();
  }

  setSampler(settings) {
    this._check();
    this.core.write(this._sp, packSampler({ ...SAMPLER_DEFAULTS, ...settings }));
    this.core.call('realm_session_set_sampler', this.handle, this._sp);
  }

  sample() {
    this._check();
    const t = this.core.call('realm_session_sample', this.handle);
    if (t < 0) throw this.core.error();
    return t;
  }

  /**
   * Record log-probabilities with every sample from now on (realm_session_set_logprobs):
   * null or -1 turns them off (the default); n (0..MAX_LOGPROBS = 20) records the sampled
   * token's and the n most likely tokens', over the distribution the sampler starts from
   * (after penalties, at temperature 1; OpenAI's logprobs). Also for realm_batch_step.
   */
  setLogprobs(n) {
    this._check();
    const k = n == null ? -1 : Number(n);
    if (!Number.isInteger(k) || k < -1 || k > MAX_LOGPROBS) {
      throw new RealmError(`logprobs: ${n} is not null, -1 or an integer from 0 to ${MAX_LOGPROBS}`);
    }
    if (!this.core.call('realm_session_set_logprobs', this.handle, k)) throw this.core.error();
  }

  /**
   * Apply LoRA adapters [[entry, scale], ...] (entries from lora.js acquireLora; [] removes
   * them) from the next eval (realm_session_set_lora). A change empties the cache, whose
   * keys and values the old adapters computed; returns whether it changed.
   */
  setLora(pairs) {
    this._check();
    const c = this.core;
    const n = pairs.length;
    const p = c.alloc(12 * Math.max(n, 1));
    try {
      const dv = c.dv(p, 12 * Math.max(n, 1));
      pairs.forEach(([e, sc], i) => {
        if (!e.handle) throw new RealmError(`LoRA adapter ${e.name} was unloaded`);
        if (e.model !== this.model) throw new RealmError(`LoRA adapter ${e.name} was loaded for another model`);
        dv.setFloat32(c.ptrBytes * n + 4 * i, sc, true);
      });
      c.setHandles(dv, pairs.map(([e]) => e.handle));
      if (!c.call('realm_session_set_lora', this.handle, p, p + c.ptrBytes * n, n)) throw c.error();
    } finally {
      c.free(p);
    }
    const key = pairs.map(([e, sc]) => `${e.handle}:${sc}`).join(',');
    const changed = key !== (this._loraKey || '');
    if (changed) c.call('realm_session_truncate', this.handle, 0);
    this._loraKey = key;
    return changed;
  }

  /**
   * Constrain every later sample to a GBNF grammar (llama.cpp's syntax; the core's
   * realm_grammar_new + realm_session_set_grammar: tokens the grammar refuses are masked
   * before sampling, end-of-generation only where it is complete), from its start; null
   * removes it. A bad grammar throws a RealmError naming its line and column.
   */
  setGrammar(text, root = 'root') {
    this._check();
    const c = this.core;
    if (text == null) {
      if (!c.call('realm_session_set_grammar', this.handle, 0)) throw c.error();
      return;
    }
    withGrammar(c, this.model.handle, text, root, (g) => {   // the session keeps its own copy
      if (!c.call('realm_session_set_grammar', this.handle, g)) throw c.error();
    });
  }

  /**
   * The last sample's log-probabilities (natural log) as [[id, logprob], ...]: the sampled
   * token first, then the most likely tokens, most likely first; [] when logprobs are off.
   */
  logprobs() {
    this._check();
    return readLogprobs(this, 'realm_session_logprobs', this.handle);
  }

  /** Evaluate one token and sample the next, in one call into the core. */
  step(token) {
    this._check();
    const t = this.core.call('realm_session_step', this.handle, token);
    if (t < 0) throw this.core.error();
    return t;
  }
}
