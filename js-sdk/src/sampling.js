// Sampler settings: one table of defaults per meaning, the one mapping from an OpenAI
// request, and the SamplerParams struct the core reads (core/sampler.h).
//
//   LLAMA_CPP_SAMPLING  realm.generate / stream / generateTokens (as realm_web.Realm and llama.cpp)
//   OPENAI_SAMPLING     chat.completions.create (as OpenAI and `realm serve`)

import { RealmError } from './errors.js';
import { SAMPLING_DEFAULTS, MAX_LOGPROBS, GRAMMARS, packStruct } from './abi.js';

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

/** Most choices (n) one OpenAI request may ask for (as `realm serve`: each choice holds a session). */
export const MAX_CHOICES = 16;

/** Most top_logprobs an OpenAI chat request may ask for (OpenAI's limit; the core's MAX_LOGPROBS). */
export const MAX_TOP_LOGPROBS = MAX_LOGPROBS;

function badRequest(message, param) {
  const e = new RealmError(message);
  e.param = param;
  return e;
}

function typeName(v) {   // as schemas.py _tname
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return { string: 'a string', boolean: 'a boolean', object: 'an object', bigint: 'an integer' }[typeof v] || typeof v;
}

// an integer field of an OpenAI request (as realm_web/server/schemas.py, same messages); undefined if absent
function intField(req, key, lo = null, hi = null) {
  const v = req[key];
  if (v == null) return undefined;
  const ok = typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v));
  if (!ok) throw badRequest(`Invalid type for '${key}': expected an integer, but got ${typeName(v)} instead.`, key);
  if (lo != null && v < lo) throw badRequest(`Invalid '${key}': ${v} is less than the minimum of ${lo}.`, key);
  if (hi != null && v > hi) throw badRequest(`Invalid '${key}': ${v} is greater than the maximum of ${hi}.`, key);
  return v;
}

// response_format.json_schema, checked as realm_web/grammars.py checks it: its schema
function checkJsonSchema(js) {
  if (js == null || typeof js !== 'object' || Array.isArray(js)) {
    throw badRequest("Invalid 'response_format.json_schema': expected an object with 'name' and 'schema'.", 'response_format.json_schema');
  }
  if (js.name != null && !(typeof js.name === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(js.name))) {
    throw badRequest("Invalid 'response_format.json_schema.name': 1-64 letters, digits, '_' or '-'.", 'response_format.json_schema.name');
  }
  if (js.strict != null && typeof js.strict !== 'boolean') {
    throw badRequest("Invalid 'response_format.json_schema.strict': expected a boolean.", 'response_format.json_schema.strict');
  }
  const schema = 'schema' in js ? js.schema : { type: 'object' };   // OpenAI: no schema means any JSON object
  if (schema === null || (typeof schema !== 'object' && typeof schema !== 'boolean') || Array.isArray(schema)) {
    throw badRequest("Invalid 'response_format.json_schema.schema': expected a JSON Schema object.", 'response_format.json_schema.schema');
  }
  return schema;
}

/**
 * The fields of an OpenAI chat request this SDK checks before it runs anything (with
 * `realm serve`'s messages; a RealmError whose `param` names the field): n (1..16),
 * logprobs (a boolean), top_logprobs (0..20, and only with logprobs: true), seed (an
 * integer). Returns {n, logprobs}: logprobs null (off) or the top count (0..20).
 */
export function checkOpenAI(req = {}) {
  const n = intField(req, 'n', 1, MAX_CHOICES) ?? 1;
  const lp = req.logprobs;
  if (lp != null && typeof lp !== 'boolean') {
    throw badRequest(`Invalid type for 'logprobs': expected a boolean, but got ${typeName(lp)} instead.`, 'logprobs');
  }
  const top = intField(req, 'top_logprobs', 0, MAX_TOP_LOGPROBS);
  if (top !== undefined && !lp) throw badRequest("Invalid 'top_logprobs': it needs 'logprobs' set to true.", 'top_logprobs');
  intField(req, 'seed');
  let grammar = req.grammar ?? null;   // llama-server's field: GBNF text
  let jsonSchema = null;               // response_format json_schema's (openai.js has the core convert it)
  if (grammar != null && typeof grammar !== 'string') {
    throw badRequest(`Invalid type for 'grammar': expected a string, but got ${typeName(grammar)} instead.`, 'grammar');
  }
  const rf = req.response_format;
  if (rf != null) {
    if (typeof rf !== 'object' || Array.isArray(rf)) {
      throw badRequest(`Invalid type for 'response_format': expected an object, but got ${typeName(rf)} instead.`, 'response_format');
    }
    if (rf.type != null && rf.type !== 'text' && rf.type !== 'json_object' && rf.type !== 'json_schema') {
      throw badRequest(`Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema', got '${rf.type}'.`, 'response_format.type');
    }
    if (rf.type === 'json_object' || rf.type === 'json_schema') {
      if (grammar) throw badRequest(`Give either 'grammar' or 'response_format' ${rf.type}, not both.`, 'grammar');
      if (rf.type === 'json_object') grammar = GRAMMARS.json;
      else jsonSchema = checkJsonSchema(rf.json_schema);
    }
  }
  return { n: Number(n), logprobs: lp ? Number(top ?? 0) : null, grammar: grammar || null, jsonSchema };
}

/**
 * Generation options (Realm.generate's, snake_case) of an OpenAI request (checked first:
 * checkOpenAI): every sampler field (the request's temperature, top_p, frequency_penalty,
 * presence_penalty and the llama.cpp extensions top_k, min_p, repeat_penalty,
 * repeat_last_n; else OPENAI_SAMPLING), seed, max_tokens (max_completion_tokens, else
 * max_tokens, else until the model stops or the context is full), stop, signal, and
 * logprobs (top_logprobs, when logprobs is true). One choice's: n is openai.js's
 * (choiceOptions).
 */
export function fromOpenAI(req = {}) {
  const { logprobs, grammar, jsonSchema } = checkOpenAI(req);
  const o = {};
  for (const k of Object.keys(OPENAI_SAMPLING)) o[k] = req[k] ?? OPENAI_SAMPLING[k];
  if (req.seed != null) o.seed = req.seed;
  o.max_tokens = req.max_completion_tokens ?? req.max_tokens ?? -1;
  if (req.stop != null) o.stop = req.stop;
  if (req.signal != null) o.signal = req.signal;
  if (logprobs != null) o.logprobs = logprobs;
  if (grammar != null) o.grammar = grammar;
  if (jsonSchema != null) o.json_schema = jsonSchema;   // GBNF once the core converts it (openai.js)
  return o;
}

/**
 * The options of each of a request's n choices (as `realm serve`'s _choice_sampling):
 * choice 0's are fromOpenAI(req), what n = 1 gives; choice i samples from seed + i
 * (mod 2^64), the seed being the request's or, when it gives none (or a negative one)
 * and n > 1, one random seed for all of them.
 */
export function choiceOptions(req = {}) {
  const { n } = checkOpenAI(req);
  const o = fromOpenAI(req);
  if (n === 1) return [o];
  const base = o.seed == null || negative(o.seed) ? randomSeed() : BigInt(o.seed);
  return Array.from({ length: n }, (_, i) => ({ ...o, seed: BigInt.asUintN(64, base + BigInt(i)) }));
}

/** SamplerParams (core/abi.json) as the core reads it. */
export function packSampler(s) {
  return packStruct('SamplerParams', {
    temperature: Number(s.temperature), top_p: Number(s.top_p), min_p: Number(s.min_p),
    repeat_penalty: Number(s.repeat_penalty), frequency_penalty: Number(s.frequency_penalty),
    presence_penalty: Number(s.presence_penalty), top_k: s.top_k | 0, repeat_last_n: s.repeat_last_n | 0, seed: s.seed,
  });
}
