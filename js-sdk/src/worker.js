// The worker side of worker mode: runs Realms off the main thread and answers
// worker-client.js's messages. Works as a browser module worker
// (new Worker(url, {type: 'module'})) and as a Node worker_threads worker.
//
// Protocol (structured-clone messages):
//   in:  {t: 'call', id, op, args}  {t: 'abort', id}  {t: 'abort', id, index} (one prompt of a streamBatch)
//   out: {t: 'progress', id, p}  {t: 'item', id, v}  {t: 'done', id, v}  {t: 'error', id, e: {name, message}}
import { Realm } from './realm.js';
import { plainStats } from './generation.js';
import { isNode } from './env.js';
import { modelCache } from './cache.js';
import * as store from './store.js';

const realms = new Map(); // handle -> Realm
let nextHandle = 1;
const calls = new Map();  // call id -> AbortController
const prompts = new Map(); // call id -> [AbortController] of a streamBatch call's prompts

let post;

function errInfo(e) {
  if (e && typeof e === 'object') {
    const o = { name: e.name || 'Error', message: e.message || String(e) };
    if (e.index != null) o.index = e.index;                 // a batch prompt
    if (e.sessionIndex !== undefined) o.sessionIndex = e.sessionIndex; // a batch session (core)
    return o;
  }
  return { name: 'Error', message: String(e) };
}

function realmOf(h) {
  const r = realms.get(h);
  if (!r) throw Object.assign(new Error('this Realm has been unloaded'), { name: 'RealmError' });
  return r;
}

function describe(h, r) {
  return { handle: h, info: r.info, nCtx: r.nCtx, device: r.device, deviceNote: r.deviceNote, threads: r.threads, threadsNote: r.threadsNote, simd: r.simd, wasm: r.wasm, id: r.id, source: r.source, fromCache: r.fromCache, lora: r.lora };
}

const ops = {
  async load(id, [source, opts]) {
    const r = await Realm.load(source, {
      ...opts, worker: false, signal: calls.get(id).signal,
      onProgress: (p) => post({ t: 'progress', id, p }),
    });
    const h = nextHandle++;
    realms.set(h, r);
    return describe(h, r);
  },
  async unload(id, [h]) {
    const r = realms.get(h);
    realms.delete(h);
    if (r) await r.unload();
    return null;
  },
  async setLora(id, [h, spec]) {
    const r = realmOf(h);
    await r.setLora(spec);
    return r.lora;
  },
  async tokenize(id, [h, text, opts]) { return realmOf(h).tokenize(text, opts); },
  async detokenize(id, [h, ids, opts]) { return realmOf(h).detokenize(ids, opts); },
  async metadata(id, [h]) { return realmOf(h).metadata(); },
  async applyChatTemplate(id, [h, messages, opts]) { return realmOf(h).applyChatTemplate(messages, opts); },
  async chatIds(id, [h, messages, opts]) { return realmOf(h).chatIds(messages, opts); },
  async generate(id, [h, prompt, opts]) {
    const r = realmOf(h);
    const text = await r.generate(prompt, { ...opts, signal: calls.get(id).signal });
    return { text, stats: plainStats(r.lastStats) };
  },
  async stream(id, [h, prompt, opts]) {
    const r = realmOf(h);
    for await (const piece of r.stream(prompt, { ...opts, signal: calls.get(id).signal })) post({ t: 'item', id, v: piece });
    return { stats: plainStats(r.lastStats) };
  },
  async generateTokens(id, [h, prompt, opts]) {
    const r = realmOf(h);
    for await (const tok of r.generateTokens(prompt, { ...opts, signal: calls.get(id).signal })) post({ t: 'item', id, v: tok });
    return { stats: plainStats(r.lastStats) };
  },
  async streamBatch(id, [h, items, opts]) {
    const ctrls = items.map(() => new AbortController()); // (set before any await: an abort may follow at once)
    prompts.set(id, ctrls);
    try {
      const r = realmOf(h);
      const mine = items.map((it, i) => ({ ...it, signal: ctrls[i].signal }));
      for await (const ev of r.streamBatch(mine, { ...opts, signal: calls.get(id).signal })) {
        post({ t: 'item', id, v: ev.done ? { ...ev, stats: ev.stats ? plainStats(ev.stats) : null, error: ev.error ? errInfo(ev.error) : null } : ev });
      }
      return null;
    } finally {
      prompts.delete(id);
    }
  },
  async chat(id, [h, req]) {
    const r = realmOf(h);
    const res = await r.chat.completions.create({ ...req, signal: calls.get(id).signal });
    if (!req.stream) return res;
    for await (const chunk of res) post({ t: 'item', id, v: chunk });
    return null;
  },
  async cache(id, [method, ...args]) { return modelCache[method](...args); },
  async loaded() { return store.loadedModels(); },
  async memoryBytes() { return store.memoryBytes(); },
  async ping() { return 'pong'; },
};

async function onMessage(msg) {
  if (!msg || typeof msg !== 'object') return;
  if (msg.t === 'abort' && msg.index != null) { // one prompt of a streamBatch call
    const c = (prompts.get(msg.id) || [])[msg.index];
    if (c) c.abort(new DOMException('The operation was aborted.', 'AbortError'));
    return;
  }
  if (msg.t === 'abort') {
    const c = calls.get(msg.id);
    if (c) c.abort(new DOMException('The operation was aborted.', 'AbortError'));
    return;
  }
  if (msg.t !== 'call') return;
  const { id, op, args } = msg;
  const ctrl = new AbortController();
  calls.set(id, ctrl);
  try {
    const f = ops[op];
    if (!f) throw new Error(`unknown operation ${op}`);
    const v = await f(id, args || []);
    post({ t: 'done', id, v });
  } catch (e) {
    post({ t: 'error', id, e: errInfo(e) });
  } finally {
    calls.delete(id);
  }
}

if (isNode) {
  const { parentPort } = await import('node:worker_threads');
  if (parentPort) {
    post = (m) => parentPort.postMessage(m);
    parentPort.on('message', onMessage);
  }
} else if (typeof self !== 'undefined' && typeof self.postMessage === 'function') {
  post = (m) => self.postMessage(m);
  self.onmessage = (ev) => onMessage(ev.data);
}
