// Pieces of the SDK that need no model: stop strings (the cases realm_web/stops.py runs
// too), the generation state machine over a toy vocabulary, the sampling tables and the
// OpenAI request mapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { REPO } from './helpers.mjs';
import { StopFilter } from '../src/stops.js';
import { Generation, chatPromptIds, newStats, plainStats, STATS_FIELDS } from '../src/generation.js';
import { LLAMA_CPP_SAMPLING, OPENAI_SAMPLING, SAMPLER_DEFAULTS, fromOpenAI, samplerSettings } from '../src/sampling.js';
import { RealmError, ContextOverflowError } from '../src/errors.js';

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

// A toy vocabulary: id -> bytes; 0 is the end of generation, 1 BOS.
const enc = new TextEncoder();
const PIECES = ['</s>', '<s>', 'Hello', ' world', '\n', '\n\n', null, 'x', 'STOP', '!'];
function toyVocab({ add_bos = true } = {}) {
  const bytes = PIECES.map((p) => enc.encode(p ?? ''));
  bytes[6] = new Uint8Array([0xC3]);        // the first byte of é
  bytes.push(new Uint8Array([0xA9]));       // 10: its second byte
  return {
    info: { bos: 1, eos: 0, add_bos },
    isEog: (t) => t === 0,
    piece: (t) => bytes[t],
    tokenize: (text) => text.split('|').filter(Boolean).map(Number), // "2|3" -> [2, 3]
  };
}

/** Drive a Generation as realm.js does, sampling from `samples`; returns what a stream sees. */
function drive(ids, samples, opts = {}, cached = []) {
  const g = new Generation(ids, { nCtx: 16, vocab: toyVocab(), ...opts });
  const feeds = [];
  const keep = g.reuse(cached);
  feeds.push(g.feed());
  g.prefilled();
  const pieces = [];
  const tokens = [];
  let i = 0;
  for (;;) {
    const r = g.accept(samples[i++]);
    if (r.token != null) tokens.push(r.token);
    if (r.text) pieces.push(r.text);
    if (r.done) break;
    feeds.push(g.feed());
  }
  return { g, keep, feeds, pieces, tokens, text: pieces.join(''), reason: g.finishReason, stats: g.stats };
}

test('Generation: prefix reuse keeps the common prefix and re-evaluates at least one token', () => {
  let d = drive([1, 2, 3, 4], [0], {}, [1, 2, 9, 9, 9]);
  assert.equal(d.keep, 2);
  assert.deepEqual(d.feeds[0], [3, 4]);
  assert.equal(d.stats.cached_tokens, 2);
  d = drive([1, 2, 3], [0], {}, [1, 2, 3, 4]); // the whole prompt is cached: its last token again
  assert.equal(d.keep, 2);
  assert.deepEqual(d.feeds[0], [3]);
  d = drive([5], [0], {}, [5]);
  assert.equal(d.keep, 0);
  assert.deepEqual(d.feeds[0], [5]);
});

test('Generation: feeds, EOG, ignore_eos, max_tokens, context full', () => {
  let d = drive([1, 2], [2, 3, 0, 7]);
  assert.deepEqual(d.tokens, [2, 3]);
  assert.deepEqual(d.feeds.slice(1), [[2], [3]]);
  assert.equal(d.text, 'Hello world');
  assert.equal(d.reason, 'stop');
  assert.equal(d.stats.finish_reason, 'stop');
  assert.equal(d.stats.generated_tokens, 2);
  assert.deepEqual(d.stats.tokens, [2, 3]);
  assert.equal(d.stats.prompt_tokens, 2);
  d = drive([1, 2], [2, 0, 0, 7], { ignore_eos: true, max_tokens: 3 });
  assert.deepEqual(d.tokens, [2, 0, 0]);
  assert.equal(d.reason, 'length');
  // max_tokens reached: the next token decides (EOG: 'stop', as the Python Realm)
  d = drive([1], [2, 3, 0], { max_tokens: 2 });
  assert.deepEqual(d.tokens, [2, 3]);
  assert.equal(d.reason, 'stop');
  d = drive([1], [2, 3, 7], { max_tokens: 2 });
  assert.equal(d.reason, 'length');
  d = drive([1], [2], { max_tokens: 0 });
  assert.deepEqual(d.tokens, []);
  assert.equal(d.reason, 'length');
  // negative or null max_tokens: until the context is full (16 = 4 prompt + 12 generated + ... )
  for (const max of [-1, null]) {
    d = drive([1, 2, 3, 4], new Array(40).fill(7), { max_tokens: max });
    assert.equal(d.tokens.length, 13); // the 13th fills position 16: no room to evaluate it
    assert.equal(d.reason, 'length');
  }
});

test('Generation: incremental UTF-8, stop strings, flush at the end', () => {
  let d = drive([1], [2, 6, 10, 0]);
  assert.deepEqual(d.pieces, ['Hello', 'é']); // the split character comes out whole
  d = drive([1], [2, 6, 0]);                  // ends mid-character: U+FFFD, as TextDecoder and Python's 'replace'
  assert.deepEqual(d.pieces, ['Hello', '\ufffd']);
  d = drive([1], [2, 3, 5, 2, 0], { stop: '\n\n' });
  assert.equal(d.text, 'Hello world');
  assert.deepEqual(d.tokens, [2, 3, 5]);        // the stop's token counts as generated
  assert.equal(d.reason, 'stop');
  d = drive([1], [2, 7, 8, 0], { stop: ['STOP', 'xS'] }); // earliest match
  assert.equal(d.text, 'Hello');
  d = drive([1], [2, 4, 0], { stop: ['\n\nx'] });        // held back, then flushed at EOG
  assert.deepEqual(d.pieces, ['Hello', '\n']);
  assert.equal(d.reason, 'stop');
  d = drive([1], [2, 4, 7], { stop: ['\n\nx'], max_tokens: 2 });
  assert.equal(d.text, 'Hello\n');
  assert.equal(d.reason, 'length');
  d = drive([1], [2, 5, 0], { stop: ['\n\n'], text: false }); // tokens only: no text, no stops
  assert.deepEqual(d.tokens, [2, 5]);
  assert.equal(d.text, '');
});

test('Generation: bad prompts, misuse, stats', () => {
  assert.throws(() => new Generation([], { nCtx: 8, vocab: toyVocab() }), RealmError);
  assert.throws(() => new Generation([1, 2, 3, 4, 5, 6, 7, 8], { nCtx: 8, vocab: toyVocab() }), ContextOverflowError);
  const g = new Generation([1, 2], { nCtx: 8, vocab: toyVocab() });
  assert.throws(() => g.prefilled(), /prefilled/);
  assert.deepEqual(g.feed(), [1, 2]); // feed() first: nothing cached
  g.prefilled();
  assert.equal(g.accept(0).done, true);
  assert.throws(() => g.accept(2), /finished/);
  assert.ok(g.stats.prompt_seconds >= 0 && g.stats.generate_seconds >= 0);
  const s = newStats({ prompt_tokens: 10, cached_tokens: 4, prompt_seconds: 2, generated_tokens: 6, generate_seconds: 3, extra: 1 });
  assert.equal(s.prompt_tps, 3);
  assert.equal(s.generate_tps, 2);
  assert.equal(s.extra, undefined);
  assert.deepEqual(Object.keys(plainStats(s)), [...STATS_FIELDS]);
});

test('chat prompt ids: BOS added only when the vocabulary wants one and the template left it out', () => {
  assert.deepEqual(chatPromptIds(toyVocab(), '2|3'), [1, 2, 3]);
  assert.deepEqual(chatPromptIds(toyVocab(), '1|2|3'), [1, 2, 3]);
  assert.deepEqual(chatPromptIds(toyVocab({ add_bos: false }), '2|3'), [2, 3]);
  assert.deepEqual(chatPromptIds(toyVocab(), ''), [1]);
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
  assert.throws(() => fromOpenAI({ n: 2 }), RealmError);
  // what the sampler then gets: OpenAI's table, not llama.cpp's
  const s = samplerSettings(fromOpenAI({ temperature: 0.9, seed: 5 }), LLAMA_CPP_SAMPLING);
  assert.deepEqual(s, { ...OPENAI_SAMPLING, temperature: 0.9, seed: 5 });
});
