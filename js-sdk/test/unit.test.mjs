// Pieces of the SDK that need no model: stop strings and the generation state machine
// on the cases the Python host runs too (tests/stop_cases.json, tests/generation_cases.json),
// the chat BOS rule, the sampling tables and the OpenAI request mapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { REPO } from './helpers.mjs';
import { StopFilter } from '../src/stops.js';
import { Generation, advance, chatPromptIds, newStats, plainStats, STATS_FIELDS } from '../src/generation.js';
import { LLAMA_CPP_SAMPLING, OPENAI_SAMPLING, SAMPLER_DEFAULTS, fromOpenAI, samplerSettings, checkOpenAI, choiceOptions } from '../src/sampling.js';
import { RealmError, ContextOverflowError } from '../src/errors.js';
import { GRAMMARS } from '../src/abi.js';

const STOP_CASES = JSON.parse(fs.readFileSync(path.join(REPO, 'tests', 'stop_cases.json'), 'utf8')).cases;

test('StopFilter: the cases tests/test_stops.py runs on realm_web/stops.py', () => {
  assert.ok(STOP_CASES.length >= 15);
  for (const c of STOP_CASES) {
    const f = new StopFilter(c.stops);
    assert.deepEqual(c.pieces.map((p) => f.push(p)), c.out, c.name);
    assert.equal(f.hit, c.hit, c.name);
    assert.equal(f.flush(), c.flush, c.name);
  }
});

const GEN = JSON.parse(fs.readFileSync(path.join(REPO, 'tests', 'generation_cases.json'), 'utf8'));

/** The scripted vocabulary of tests/generation_cases.json (any other id is '?'). */
function scriptedVocab(spec = GEN.vocab) {
  return { piece: (t) => new Uint8Array(spec.pieces[String(t)] ?? [63]), isEog: (t) => spec.eog.includes(t) };
}

test('Generation: the cases tests/test_generation_cases.py runs on realm_web/generation.py', () => {
  assert.ok(GEN.cases.length >= 20);
  for (const c of GEN.cases) {
    const g = new Generation(scriptedVocab(), c.prompt, c.n_ctx, { max_tokens: c.max_tokens, stop: c.stop ?? [], ignore_eos: c.ignore_eos ?? false, text: c.text ?? true });
    const got = {};
    if ('cached' in c) got.keep = g.reuse(c.cached);
    const fed = [];
    const accepted = [];
    let i = 0;
    while (!g.done) {
      const ids = g.nextIds(c.chunk ?? null);
      fed.push(ids);
      if (g.fed(ids.length)) accepted.push(g.accept(c.samples[i++]));
    }
    const s = g.stats;
    Object.assign(got, {
      next_ids: fed, accepted, finish_reason: s.finish_reason, tokens: s.tokens, generated_tokens: s.generated_tokens,
      cached_tokens: s.cached_tokens, n_past: g.nPast,
    });
    assert.deepEqual(got, c.expect, c.name);
  }
});

test('Generation: token, done and finishReason after each accept', () => {
  const g = new Generation(scriptedVocab(), [10], 64, { stop: ['lo w'] });
  g.fed(g.nextIds().length);
  assert.equal(g.accept(1), 'He');
  assert.equal(g.token, 1);
  assert.equal(g.done, false);
  assert.equal(g.finishReason, '');
  assert.equal(g.accept(2), 'l'); // "lo" could still start "lo w": held back
  g.fed(1);
  assert.equal(g.accept(3), '');
  assert.equal(g.token, 3);
  assert.ok(g.done);
  assert.equal(g.finishReason, 'stop');
  assert.deepEqual(g.nextIds(), []);
  const e = new Generation(scriptedVocab(), [10], 64);
  e.fed(1);
  assert.equal(e.accept(0), '');
  assert.equal(e.token, null); // the EOG id is not a generated token
  assert.equal(e.finishReason, 'stop');
});

test('advance drives a session: prompt chunks with eval, then sample, then step', async () => {
  const calls = [];
  const session = {
    eval: (ids) => { calls.push(['eval', ids]); },
    sample: () => { calls.push(['sample']); return 1; },
    step: async (tok) => { calls.push(['step', tok]); return { 1: 2, 2: 0 }[tok]; }, // a GPU session's are async
  };
  const g = new Generation(scriptedVocab(), [10, 11, 12], 64);
  let out = '';
  while (!g.done) out += await advance(g, session, 2);
  assert.equal(out, 'Hello');
  assert.equal(g.finishReason, 'stop');
  assert.deepEqual(calls, [['eval', [10, 11]], ['eval', [12]], ['sample'], ['step', 1], ['step', 2]]);
  assert.equal(await advance(g, session), '');
  assert.equal(calls.length, 5);
  // a GPU session syncs once, after the prompt's last chunk
  const synced = [];
  const gpu = { eval: async (ids) => { synced.push(ids.length); }, sync: async () => { synced.push('sync'); }, sample: async () => 0 };
  const h = new Generation(scriptedVocab(), [1, 2, 3, 4, 5], 64);
  while (!h.done) await advance(h, gpu, 2);
  assert.deepEqual(synced, [2, 2, 1, 'sync']);
});

test('Generation: bad prompts, misuse, stats', () => {
  assert.throws(() => new Generation(scriptedVocab(), [], 8), RealmError);
  assert.throws(() => new Generation(scriptedVocab(), [1, 2, 3, 4, 5, 6, 7, 8], 8), ContextOverflowError);
  const g = new Generation(scriptedVocab(), [1, 2], 8);
  assert.throws(() => g.accept(1), /follows fed/);
  assert.deepEqual(g.nextIds(), [1, 2]);
  assert.equal(g.fed(2), true);
  assert.equal(g.accept(0), '');
  assert.throws(() => g.accept(2), /finished/);
  assert.ok(g.stats.prompt_seconds >= 0 && g.stats.generate_seconds >= 0);
  const a = new Generation(scriptedVocab(), [1, 2], 8); // abandoned: no finish reason
  a.close();
  assert.ok(a.done);
  assert.equal(a.finishReason, '');
  assert.equal(new Generation(scriptedVocab(), [1], 500).maxTokens, 128); // the Realm API's default
  const s = newStats({ prompt_tokens: 10, cached_tokens: 4, prompt_seconds: 2, generated_tokens: 6, generate_seconds: 3, extra: 1 });
  assert.equal(s.prompt_tps, 3);
  assert.equal(s.generate_tps, 2);
  assert.equal(s.extra, undefined);
  assert.deepEqual(Object.keys(plainStats(s)), [...STATS_FIELDS]);
});

function toyVocab({ add_bos = true, bos = 1 } = {}) {
  const calls = [];
  return {
    calls,
    info: { bos, add_bos },
    tokenize: (text, addSpecial, parseSpecial) => { calls.push([text, addSpecial, parseSpecial]); return text.split('|').filter(Boolean).map(Number); },
  };
}

test('chat prompt ids: BOS added only when the vocabulary wants one and the template left it out', () => {
  const v = toyVocab();
  assert.deepEqual(chatPromptIds(v, '2|3'), [1, 2, 3]);
  assert.deepEqual(v.calls, [['2|3', false, true]]); // the template wrote the specials it wants: parse them, add none
  assert.deepEqual(chatPromptIds(toyVocab(), '1|2|3'), [1, 2, 3]);
  assert.deepEqual(chatPromptIds(toyVocab({ add_bos: false }), '2|3'), [2, 3]);
  assert.deepEqual(chatPromptIds(toyVocab(), ''), [1]);
  assert.deepEqual(chatPromptIds(toyVocab({ bos: -1 }), '5'), [5]); // no BOS in the vocabulary
});

test('sampling: llama.cpp defaults for generate, OpenAI defaults for chat.completions', () => {
  assert.deepEqual({ ...LLAMA_CPP_SAMPLING }, {
    temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64, frequency_penalty: 0, presence_penalty: 0,
  });
  assert.deepEqual({ ...OPENAI_SAMPLING }, {
    temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0, repeat_penalty: 1.0, repeat_last_n: 64, frequency_penalty: 0, presence_penalty: 0,
  });
  assert.equal(SAMPLER_DEFAULTS.temperature, 0.8);
  const s = samplerSettings({ temperature: 0.5, seed: 7 });
  assert.equal(s.temperature, 0.5);
  assert.equal(s.top_k, 40);
  assert.equal(s.seed, 7);
  for (const seed of [undefined, null, -1, -1n]) assert.equal(typeof samplerSettings({ seed }).seed, 'bigint');
  assert.notEqual(samplerSettings({}).seed, samplerSettings({}).seed);
});

test('fromOpenAI maps a request onto generation options', () => {
  const o = fromOpenAI({ messages: [], model: 'x' });
  assert.deepEqual(o, { ...OPENAI_SAMPLING, max_tokens: -1 });
  const signal = new AbortController().signal;
  const r = fromOpenAI({
    temperature: 0.9, top_p: 0.5, frequency_penalty: 0.25, presence_penalty: -0.5, seed: 5, max_tokens: 24, stop: ['\n'],
    top_k: 12, min_p: 0.1, repeat_penalty: 1.1, repeat_last_n: 32, signal, n: 1, stream: true, user: 'u',
  });
  assert.deepEqual(r, {
    temperature: 0.9, top_p: 0.5, frequency_penalty: 0.25, presence_penalty: -0.5, seed: 5, max_tokens: 24, stop: ['\n'],
    top_k: 12, min_p: 0.1, repeat_penalty: 1.1, repeat_last_n: 32, signal,
  });
  assert.equal(fromOpenAI({ max_completion_tokens: 3, max_tokens: 9 }).max_tokens, 3);
  assert.equal(fromOpenAI({ max_completion_tokens: null, max_tokens: 9 }).max_tokens, 9);
  assert.equal(fromOpenAI({ temperature: null, seed: null }).temperature, 1.0);
  assert.equal('seed' in fromOpenAI({ seed: null }), false);
  assert.equal(fromOpenAI({ temperature: 0 }).temperature, 0);
  assert.equal('n' in fromOpenAI({ n: 2 }), false);   // one choice's options (choiceOptions: all n)
  assert.equal(fromOpenAI({ logprobs: true, top_logprobs: 3 }).logprobs, 3);
  assert.equal(fromOpenAI({ logprobs: true }).logprobs, 0);
  assert.equal('logprobs' in fromOpenAI({ logprobs: false }), false);
  // what the sampler then gets: OpenAI's table, not llama.cpp's
  const s = samplerSettings(fromOpenAI({ temperature: 0.9, seed: 5 }), LLAMA_CPP_SAMPLING);
  assert.deepEqual(s, { ...OPENAI_SAMPLING, temperature: 0.9, seed: 5 });
});

test('checkOpenAI refuses bad n, logprobs and top_logprobs with realm serve\'s messages', () => {
  assert.deepEqual(checkOpenAI({}), { n: 1, logprobs: null, grammar: null, jsonSchema: null });
  assert.deepEqual(checkOpenAI({ n: 16, logprobs: true, top_logprobs: 20 }), { n: 16, logprobs: 20, grammar: null, jsonSchema: null });
  assert.deepEqual(checkOpenAI({ response_format: { type: 'json_object' } }), { n: 1, logprobs: null, grammar: GRAMMARS.json, jsonSchema: null });
  const schema = { type: 'object', properties: { a: { type: 'integer' } } };
  assert.deepEqual(checkOpenAI({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }).jsonSchema, schema);
  assert.deepEqual(fromOpenAI({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }).json_schema, schema);
  assert.deepEqual(checkOpenAI({ grammar: 'root ::= "a"' }).grammar, 'root ::= "a"');
  assert.deepEqual(checkOpenAI({ logprobs: false, top_logprobs: null }), { n: 1, logprobs: null, grammar: null, jsonSchema: null });
  const bad = [
    [{ top_logprobs: 2 }, 'top_logprobs', "Invalid 'top_logprobs': it needs 'logprobs' set to true."],
    [{ logprobs: false, top_logprobs: 0 }, 'top_logprobs', "Invalid 'top_logprobs': it needs 'logprobs' set to true."],
    [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs', "Invalid 'top_logprobs': 21 is greater than the maximum of 20."],
    [{ logprobs: true, top_logprobs: -1 }, 'top_logprobs', "Invalid 'top_logprobs': -1 is less than the minimum of 0."],
    [{ logprobs: true, top_logprobs: 1.5 }, 'top_logprobs', "Invalid type for 'top_logprobs': expected an integer, but got a number instead."],
    [{ logprobs: 1 }, 'logprobs', "Invalid type for 'logprobs': expected a boolean, but got an integer instead."],
    [{ n: 0 }, 'n', "Invalid 'n': 0 is less than the minimum of 1."],
    [{ n: 17 }, 'n', "Invalid 'n': 17 is greater than the maximum of 16."],
    [{ n: '2' }, 'n', "Invalid type for 'n': expected an integer, but got a string instead."],
    [{ seed: 1.5 }, 'seed', "Invalid type for 'seed': expected an integer, but got a number instead."],
    [{ grammar: 5 }, 'grammar', "Invalid type for 'grammar': expected a string, but got an integer instead."],
    [{ response_format: { type: 'json_object' }, grammar: 'root ::= "a"' }, 'grammar',
      "Give either 'grammar' or 'response_format' json_object, not both."],
    [{ response_format: { type: 'json_schema' } }, 'response_format.json_schema',
      "Invalid 'response_format.json_schema': expected an object with 'name' and 'schema'."],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'a b', schema: {} } } }, 'response_format.json_schema.name',
      "Invalid 'response_format.json_schema.name': 1-64 letters, digits, '_' or '-'."],
  ];
  for (const [req, param, message] of bad) {
    assert.throws(() => checkOpenAI(req), (e) => e instanceof RealmError && e.param === param && e.message === message, JSON.stringify(req));
    assert.throws(() => fromOpenAI(req), RealmError);
  }
});

test('choiceOptions: choice 0 is n = 1\'s, choice i samples from seed + i (mod 2^64)', () => {
  assert.deepEqual(choiceOptions({ seed: 5 }), [fromOpenAI({ seed: 5 })]);
  const three = choiceOptions({ seed: 5, n: 3, temperature: 0.5 });
  assert.deepEqual(three.map((o) => o.seed), [5n, 6n, 7n]);
  for (const o of three) assert.equal(o.temperature, 0.5);
  assert.deepEqual(choiceOptions({ seed: (1n << 64n) - 1n, n: 2 }).map((o) => o.seed), [(1n << 64n) - 1n, 0n]);
  const r = choiceOptions({ n: 2 }).map((o) => o.seed);   // no seed: one random seed, then + 1
  assert.equal(r[1], BigInt.asUintN(64, r[0] + 1n));
  const neg = choiceOptions({ n: 2, seed: -1 }).map((o) => o.seed);   // negative: random, as the server
  assert.equal(neg[1], BigInt.asUintN(64, neg[0] + 1n));
  assert.throws(() => choiceOptions({ n: 17 }), RealmError);
});
