// Models over 4 GiB: a synthetic LLaMA with 4.83 GB of F32 weights (test/make_big_model.py,
// generated once into ${REALM_CACHE:-~/.cache/realm-web}/models) is streamed into Memory64
// memory past 4 GiB, in Node (from its path) and in Chromium (from a URL, fetch body
// reader), and generates the same greedy tokens as the native Python host.
// Slow (minutes, ~5 GB of RAM per host, one after the other): REALM_SKIP_BIG=1 skips it
// locally; CI runs it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { SDK, pyExpect, runPython, startServer, launchChromium, chromiumAvailable, defaultModelPath, STRICT } from './helpers.mjs';

const GiB = 2 ** 30;
let skip = false;
if (process.env.REALM_SKIP_BIG === '1') skip = 'REALM_SKIP_BIG=1';
else if (Number(process.versions.node.split('.')[0]) < 22) skip = 'Node < 22 stops Memory64 at 4 GiB';
else if (!defaultModelPath()) skip = STRICT ? false : 'default model not installed (its tokenizer is reused)';

const PROMPT = 'The capital of France is';
const N = 4;
let model, expected;

before(() => {
  if (skip) return;
  model = runPython([path.join(SDK, 'test', 'make_big_model.py')]).split('\n').pop();
  assert.ok(fs.statSync(model).size > 4 * GiB, 'the test model is over 4 GiB');
  expected = pyExpect(model, [{ kind: 'generate', prompt: PROMPT, max_tokens: N }], { nCtx: 64 })[0];
  assert.equal(expected.ids.length, N);
});

test('Node: a >4 GiB model streams into Memory64 and generates as the Python host', { skip, timeout: 1_800_000 }, async () => {
  const { Realm } = await import('../src/index.js');
  let last = null;
  let calls = 0;
  const t0 = performance.now();
  const rssBefore = process.memoryUsage().rss;
  const r = await Realm.load(model, { nCtx: 64, onProgress: (p) => { last = p; calls++; } });
  const loadS = (performance.now() - t0) / 1000;
  try {
    const mem = Realm.memoryBytes();
    assert.ok(mem > 4 * GiB, `wasm memory ${mem}`);
    assert.equal(last.loaded, fs.statSync(model).size);
    assert.ok(calls > 100);
    // one copy: wasm memory, not wasm memory plus a JS buffer of the weights
    const rss = process.memoryUsage().rss - rssBefore;
    assert.ok(rss < mem + GiB, `RSS grew ${rss} for ${mem} bytes of wasm memory`);
    const text = await r.generate(PROMPT, { max_tokens: N, temperature: 0 });
    assert.deepEqual(r.lastStats.tokens, expected.ids);
    assert.equal(text, expected.text);
    console.error(`# node: loaded ${(fs.statSync(model).size / 1e9).toFixed(2)} GB in ${loadS.toFixed(1)} s; wasm memory ${(mem / GiB).toFixed(2)} GiB; RSS +${(rss / GiB).toFixed(2)} GiB; ${r.lastStats.generate_tps.toFixed(2)} tok/s`);
  } finally {
    await r.unload();
  }
  assert.equal(Realm.memoryBytes(), 0);
});

test('Chromium: a >4 GiB model streams from a URL into Memory64 and generates as the Python host', { skip: skip || (!chromiumAvailable() && !STRICT && 'no /usr/bin/chromium') || (process.env.REALM_SKIP_BROWSER === '1' && 'REALM_SKIP_BROWSER=1'), timeout: 1_800_000 }, async () => {
  const server = await startServer();
  const browser = await launchChromium();
  try {
    const url = server.addModel('big.gguf', model);
    const page = await browser.ctx.newPage();
    const logs = [];
    page.on('console', (m) => logs.push(m.text()));
    await page.goto(`${server.base}/js-sdk/test/browser/index.html`);
    await page.evaluate(() => window.realmReady);
    const res = await page.evaluate(async ({ url, prompt, n }) => {
      const { Realm } = window.realm;
      const t0 = performance.now();
      let last = null;
      const r = await Realm.load(url, { nCtx: 64, cache: false, onProgress: (p) => { last = p; } });
      const loadS = (performance.now() - t0) / 1000;
      const mem = Realm.memoryBytes();
      const text = await r.generate(prompt, { max_tokens: n, temperature: 0 });
      const out = { text, ids: r.lastStats.tokens, mem, last, loadS, tps: r.lastStats.generate_tps };
      await r.unload();
      out.after = Realm.memoryBytes();
      return out;
    }, { url, prompt: PROMPT, n: N });
    assert.ok(res.mem > 4 * GiB, `wasm memory ${res.mem}`);
    assert.equal(res.last.loaded, fs.statSync(model).size);
    assert.deepEqual(res.ids, expected.ids);
    assert.equal(res.text, expected.text);
    assert.equal(res.after, 0);
    assert.equal(server.count('/models/big.gguf'), 1);
    console.error(`# chromium: loaded in ${res.loadS.toFixed(1)} s; wasm memory ${(res.mem / GiB).toFixed(2)} GiB; ${res.tps.toFixed(2)} tok/s`);
  } finally {
    await browser.close();
    await server.close();
  }
});
