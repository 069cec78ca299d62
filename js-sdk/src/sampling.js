// Sampler settings: one table of defaults per meaning, the one mapping from an OpenAI
// request, and the SamplerParams struct the core reads (core/sampler.h).
//
//   LLAMA_CPP_SAMPLING  realm.generate / stream / generateTokens (as realm_web.Realm and llama.cpp)
//   OPENAI_SAMPLING     chat.completions.create (as OpenAI and `realm serve`)

import { RealmError } from './errors.js';
import { SAMPLING_DEFAULTS, packStruct } from './abi.js';

/** llama.cpp's defaults (core/abi.json): the Realm's own API (generate, stream, generateTokens). */
export const LLAMA_CPP_SAMPLING = SAMPLING_DEFAULTS.llama_cpp;

/** OpenAI's defaults (core/abi.json; top_k and min_p off, no penalties): the OpenAI-shaped API, as `realm serve`. */
export const OPENAI_SAMPLING = SAMPLING_DEFAULTS.openai;

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

/** SamplerParams (core/abi.json) as the core reads it. */
export function packSampler(s) {
  return packStruct('SamplerParams', {
    temperature: Number(s.temperature), top_p: Number(s.top_p), min_p: Number(s.min_p),
    repeat_penalty: Number(s.repeat_penalty), frequency_penalty: Number(s.frequency_penalty),
    presence_penalty: Number(s.presence_penalty), top_k: s.top_k | 0, repeat_last_n: s.repeat_last_n | 0, seed: s.seed,
  });
}
