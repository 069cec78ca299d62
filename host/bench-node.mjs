// realm.wasm in Node through the JS SDK: load time and prompt/generation speed.
//   node host/bench-node.mjs --model FILE.gguf --text TEXT [--prompt-tokens 128] [--gen-tokens 64]
// Prints one JSON line (the same fields as bench.html's window.bench.realm).
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const model = opt("--model");
const text = opt("--text", "The history of the city begins with a small settlement on the river. ".repeat(40));
const nPrompt = Number(opt("--prompt-tokens", "128"));
const nGen = Number(opt("--gen-tokens", "64"));
const { Realm } = await import(pathToFileURL(path.join(here, "..", "js-sdk", "src", "index.js")).href);
const now = () => performance.now() / 1000;

let t0 = now();
let r = await Realm.load(model, { device: "cpu" });
const load_cold = now() - t0;
await r.unload();
t0 = now();
r = await Realm.load(model, { device: "cpu" });
const load_cached = now() - t0;
const ids = (await r.tokenize(text, { addSpecial: false })).slice(0, nPrompt);
await r.generate("Hello there. Tell me a short story.", { max_tokens: 16, temperature: 0, ignore_eos: true });
await r.generate(ids, { max_tokens: nGen, temperature: 0, ignore_eos: true });
const s = r.lastStats;
await r.unload();
const fresh = s.prompt_tokens - s.cached_tokens;
console.log(JSON.stringify({
  engine: "realm", node: process.version, load_cold, load_cached, prompt_tokens: fresh,
  prompt_tps: fresh / s.prompt_seconds, gen_tokens: s.generated_tokens, gen_tps: s.generated_tokens / s.generate_seconds,
  threads: 1,
}));
