// LoRA adapters in the JS SDK (issue 13): Realm.load(src, {lora}) and realm.setLora(...) give
// the native Python host's greedy text for the same adapters (tests/test_lora.py checks that
// one against llama.cpp); scale 0 is the base; a base model's file is refused by the core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { pyExpect, runPython, REPO, PYTHON } from './helpers.mjs';

const { Realm, RealmError } = await import('../src/index.js');

const MAKE = `
import sys, json; sys.path.insert(0, ${JSON.stringify(path.join(REPO, 'tests'))})
import refmodels
syn = refmodels.synthetic_llama(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)
a = refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=1)
b = refmodels.lora_adapter(syn, rank=16, qtype="F16", seed=2)
print(json.dumps([str(syn), str(a), str(b)]))`;

let syn, a, b, expected;
before(() => {
  [syn, a, b] = JSON.parse(runPython(['-c', MAKE], { env: { ...process.env, PYTHONPATH: REPO } }).split('\n').pop());
  const gen = { kind: 'generate', prompt: 'Hello', max_tokens: 10 };
  expected = pyExpect(syn, [{ ...gen, lora: [] }, { ...gen, lora: [[a, 1.0]] }, { ...gen, lora: [[a, 1.0], [b, 0.5]] }],
                      { nCtx: 128 }).map((x) => x.text);
  assert.equal(new Set(expected).size, 3);
});

test('Realm.load with lora and setLora match the Python host', async () => {
  const opts = { maxTokens: 10, temperature: 0 };
  const r = await Realm.load(syn, { nCtx: 128, lora: [[a, 1.0]] });
  const base = await Realm.load(syn, { nCtx: 128 });
  try {
    assert.equal(r.lora.length, 1); assert.equal(r.lora[0][1], 1.0);
    assert.equal(await r.generate('Hello', opts), expected[1]);
    assert.equal(await base.generate('Hello', opts), expected[0]);       // the other session is untouched
    await r.setLora([[a, 1.0], { path: b, scale: 0.5 }]);
    assert.equal(await r.generate('Hello', opts), expected[2]);
    await r.setLora([[a, 0]]);
    assert.equal(await r.generate('Hello', opts), expected[0]);           // scale 0: the base model
    await assert.rejects(r.setLora([[syn, 1.0]]), /general.type is not 'adapter'/);
    await assert.rejects(r.setLora([[a, NaN]]), /finite/);
    assert.equal(r.lora.length, 1);                                       // a refused change keeps the old ones
    await r.setLora([]);
    assert.equal(await r.generate('Hello', opts), expected[0]);
  } finally {
    await r.unload();
    await base.unload();
  }
});

test("generateBatch applies the Realm's adapters to every prompt", async () => {
  const opts = { maxTokens: 10, temperature: 0 };
  const r = await Realm.load(syn, { nCtx: 128, lora: [[a, 1.0]] });
  try {
    assert.deepEqual(await r.generateBatch(['Hello', 'Hello', 'Hello'], opts), [expected[1], expected[1], expected[1]]);
    await r.setLora([]);
    assert.deepEqual(await r.generateBatch(['Hello', 'Hello'], opts), [expected[0], expected[0]]);
  } finally {
    await r.unload();
  }
});

test('worker mode: Realm.load({worker, lora}) and setLora match the Python host', async () => {
  const opts = { maxTokens: 10, temperature: 0 };
  const r = await Realm.load(syn, { worker: true, nCtx: 128, lora: [[a, 1.0]] });
  try {
    assert.ok(r.isWorker);
    assert.deepEqual(r.lora.map(([, sc]) => sc), [1.0]);
    assert.equal(await r.generate('Hello', opts), expected[1]);
    await r.setLora([[a, 1.0], { path: b, scale: 0.5 }]);
    assert.equal(r.lora.length, 2);
    assert.equal(await r.generate('Hello', opts), expected[2]);
    await assert.rejects(r.setLora([[syn, 1.0]]), /general.type is not 'adapter'/);
    assert.equal(r.lora.length, 2);                                       // a refused change keeps the old ones
    await r.setLora([]);
    assert.equal(await r.generate('Hello', opts), expected[0]);
  } finally {
    await r.unload();
  }
});

test('wasm32 build: two adapters and a batch of prompts give the Memory64 build\'s text', async () => {
  // handle arrays (adapters, batch sessions) are pointer-sized: 4 bytes on wasm32
  const opts = { maxTokens: 10, temperature: 0 };
  const r = await Realm.load(syn, { wasm: 'wasm32', nCtx: 128, lora: [[a, 1.0], [b, 0.5]] });
  try {
    assert.equal(r.wasm.arch, 'wasm32');
    assert.equal(await r.generate('Hello', opts), expected[2]);
    assert.deepEqual(await r.generateBatch(['Hello', 'Hello', 'Hello'], opts), [expected[2], expected[2], expected[2]]);
  } finally {
    await r.unload();
  }
});
