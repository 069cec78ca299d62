// Sampler settings: one table of defaults per meaning, the one mapping from an OpenAI
// request, and the SamplerParams struct the core reads (core/sampler.h).
//
//   LLAMA_CPP_SAMPLING  realm.generate / stream / generateTokens (as realm_web.Realm and llama.cpp)
//   OPENAI_SAMPLING     chat.completions.create (as OpenAI and `realm serve`)

import { RealmError } from './errors.js';

/** llama.cpp's defaults: the Realm's own API (generate, stream, generateTokens). */
export const LLAMA_CPP_SAMPLING = Object.freeze({
  temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64,
  frequency_penalty: 0.0, presence_penalty: 0.0,
});

/** OpenAI's defaults (top_k and min_p off, no penalties): the OpenAI-shaped API, as `realm serve`. */
export const OPENAI_SAMPLING = Object.freeze({
  temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, repeat_last_n: 64,
  frequency_penalty: 0.0, presence_penalty: 0.0,
});

/** What Session.setSampler fills in for a field it is not given: llama.cpp's defaults and a fixed seed. */
export const SAMPLER_DEFAULTS = Object.freeze({ ...LLAMA_CPP_SAMPLING, seed: 0xFFFFFFFF });

/** A fresh u64 seed (BigInt). */
export function randomSeed() {
  if (globalThis.crypto && globalThis.crypto.getRandomValues) {
    const a = new Uint32Array(2);
    globalThis.crypto.getRandomValues(a);
    return (BigInt(a[0]) << 32n) | BigInt(a[1]);
  }
  return BigInt(Math.floor(Math.random() * 2 ** 53));
}

function negative(x) { return (typeof x === 'number' && x < 0) || (typeof x === 'bigint' && x < 0n); }

/**
 * The sampler settings of generation options `o` (snake_case): each field o gives, else
 * the table's default; the seed o gives, else (absent or negative) a random one.
 */
export function samplerSettings(o = {}, defaults = LLAMA_CPP_SAMPLING) {
  const s = {};
  for (const k of Object.keys(defaults)) s[k] = o[k] ?? defaults[k];
  s.seed = o.seed == null || negative(o.seed) ? randomSeed() : o.seed;
  return s;
}

/**
 * Generation options (Realm.generate's, snake_case) of an OpenAI request: every sampler
 * field (the request's temperature, top_p, frequency_penalty, presence_penalty and the
 * llama.cpp extensions top_k, min_p, repeat_penalty, repeat_last_n; else OPENAI_SAMPLING),
 * seed, max_tokens (max_completion_tokens, else max_tokens, else until the model stops or
 * the context is full), stop, signal.
 */
export function fromOpenAI(req = {}) {
  if (req.n != null && req.n !== 1) throw new RealmError('only n = 1 is supported');
  const o = {};
  for (const k of Object.keys(OPENAI_SAMPLING)) o[k] = req[k] ?? OPENAI_SAMPLING[k];
  if (req.seed != null) o.seed = req.seed;
  o.max_tokens = req.max_completion_tokens ?? req.max_tokens ?? -1;
  if (req.stop != null) o.stop = req.stop;
  if (req.signal != null) o.signal = req.signal;
  return o;
}

/** SamplerParams (core/sampler.h): 6 f32, 2 i32, u64 seed = 40 bytes. */
export function packSampler(s) {
  const b = new Uint8Array(40);
  const dv = new DataView(b.buffer);
  const f = [s.temperature, s.top_p, s.min_p, s.repeat_penalty, s.frequency_penalty, s.presence_penalty];
  f.forEach((v, i) => dv.setFloat32(i * 4, Number(v), true));
  dv.setInt32(24, s.top_k | 0, true);
  dv.setInt32(28, s.repeat_last_n | 0, true);
  dv.setBigUint64(32, BigInt.asUintN(64, BigInt(s.seed)), true);
  return b;
}
