// The Pyodide host in Node: realm_web's Python API over realm.wasm (Node 22+), or over
// realm32.wasm where Node has no Memory64 (Node 20 without a flag), no browser.
//
//   node host/pyodide-node.mjs --wheels DIR --model FILE.gguf [--prompt TEXT] [--max-tokens N]
//        [--temperature T] [--seed S] [--chat] [--wasm realm.wasm]   (REALM_WASM=wasm32 forces realm32.wasm)
//
// DIR holds the wheels Pyodide installs (realm_web, jinja2, markupsafe; `realm web`
// serves the same ones at /py/, and realm_web.web.write_wheels(DIR) writes them).
// Prints one JSON line: {text, tokens, stats, boot_seconds, load_seconds}.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { coreFactory, pathSource } from "./py-bridge.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const wheelsDir = opt("--wheels");
const model = opt("--model");
if (!wheelsDir || !model) { console.error("usage: pyodide-node.mjs --wheels DIR --model FILE.gguf [...]"); process.exit(2); }
const sdkBase = pathToFileURL(path.join(here, "..", "js-sdk", "src") + "/").href;
// --wasm FILE, or REALM_WASM: a file, or a width (auto | wasm64 | wasm32) as for the JS SDK;
// by default realm.wasm where this Node has Memory64, else realm32.wasm (Node 20 without a flag)
const WIDTHS = ["auto", "wasm64", "wasm32"];
const env = process.env.REALM_WASM || "";
let wasmPath = opt("--wasm", WIDTHS.includes(env.toLowerCase()) ? null : env || null);
if (!wasmPath) {
  const { chooseWasmArch } = await import(sdkBase + "core.js");
  wasmPath = path.join(here, "..", "realm_web", "wasm", chooseWasmArch() === "wasm32" ? "realm32.wasm" : "realm.wasm");
}

const t0 = performance.now();
const { loadPyodide } = await import(pathToFileURL(path.join(here, "node_modules", "pyodide", "pyodide.mjs")).href);
const [pyodide, newCore] = await Promise.all([
  loadPyodide({ stdout: (t) => process.stderr.write(t + "\n"), stderr: (t) => process.stderr.write(t + "\n") }),
  coreFactory(fs.readFileSync(wasmPath), sdkBase),
]);
for (const w of fs.readdirSync(wheelsDir).filter((f) => f.endsWith(".whl"))) {
  pyodide.unpackArchive(new Uint8Array(fs.readFileSync(path.join(wheelsDir, w))), "wheel");
}
const host = pyodide.pyimport("realm_web.pyodide_host");
host.install(newCore);
const t1 = performance.now();
const src = await pathSource(model);
const realm = host.load(src, null);
src.close();
const t2 = performance.now();
const o = { max_tokens: Number(opt("--max-tokens", "32")), temperature: Number(opt("--temperature", "0")) };
if (opt("--seed") !== undefined) o.seed = Number(opt("--seed"));
const prompt = opt("--prompt", "The capital of France is");
const it = args.includes("--chat")
  ? host.chat_stream(realm, pyodide.toPy([{ role: "user", content: prompt }]), pyodide.toPy(o))
  : host.stream(realm, prompt, pyodide.toPy(o));
let text = "";
for (let p; (p = host.next_piece(it)) != null;) text += p;
const stats = host.stats(realm).toJs({ dict_converter: Object.fromEntries });
const numpy = pyodide.runPython("import sys; 'numpy' in sys.modules or 'wasmtime' in sys.modules");
console.log(JSON.stringify({
  text, tokens: stats.tokens, stats, numpy_or_wasmtime_loaded: numpy,
  boot_seconds: (t1 - t0) / 1000, load_seconds: (t2 - t1) / 1000, node: process.version,
  wasm: { arch: newCore.arch, file: path.basename(wasmPath) },
}));
