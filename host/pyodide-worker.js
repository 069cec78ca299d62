// Module worker: Pyodide running realm_web's Python API over realm.wasm.
//
// Messages in:  {id, cmd: "boot", pyodideURL, wasmURL, wheelsURL, wasm}  wasm: "auto" (realm32.wasm
//                                                      where the engine has no Memory64) | "wasm32" | "wasm64"
//               {id, cmd: "load", url | file, n_ctx, sync}  sync: the non-JSPI sources
//               {id, cmd: "generate", prompt, opts}   prompt: text or [ids]
//               {id, cmd: "chat", messages, opts}
//               {id, cmd: "unload"}                    frees the model (the last Realm of it)
//               {id, cmd: "clearCache"}                empties the JS SDK's model cache
//               {id, cmd: "run", code}                 runs Python code (the console, tests); its last
//                                                      expression is the result
//               {cmd: "stop"}                          ends the running generation
// Messages out: {id, type: "result", value} | {id, type: "error", error}
//               {id, type: "piece", text} (while generating)
//               {type: "progress", loaded, total}     (while loading weights)
//               {type: "log", text}                    (Python's stdout/stderr)

import { coreFactory, fileSource, hasJSPI, installWheels, sdkSource, urlSource } from "./py-bridge.js";

let pyodide = null, host = null, realm = null;
let stopRequested = false;
let queue = Promise.resolve();

const post = (m) => self.postMessage(m);
const toJs = (proxy) => {
  const v = proxy.toJs({ dict_converter: Object.fromEntries });
  proxy.destroy?.();
  return v;
};

// Let queued messages (a "stop") in between two tokens without a 4 ms timer clamp.
const channel = new MessageChannel();
let wake = null;
channel.port1.onmessage = () => wake?.();
const yieldToEvents = () => new Promise((r) => { wake = r; channel.port2.postMessage(0); });

let sdkBase = "/js-sdk/src/";

async function boot({ pyodideURL = "/pyodide/", wasmURL = "/realm.wasm", wheelsURL = "/py/wheels.json", sdkURL, wasm }) {
  if (sdkURL) sdkBase = sdkURL;
  const t0 = performance.now();
  const { loadPyodide } = await import(new URL("pyodide.mjs", new URL(pyodideURL, self.location.href)).href);
  const [py, newCore] = await Promise.all([
    loadPyodide({
      indexURL: new URL(pyodideURL, self.location.href).href,
      stdout: (text) => post({ type: "log", text }),
      stderr: (text) => post({ type: "log", text }),
    }),
    coreFactory(new URL(wasmURL, self.location.href), sdkBase, { arch: wasm }),  // wasm: "auto" | "wasm32" | "wasm64"
  ]);
  pyodide = py;
  const t1 = performance.now();
  const wheels = await installWheels(pyodide, wheelsURL);
  host = pyodide.pyimport("realm_web.pyodide_host");
  host.install(newCore);
  const sys = pyodide.pyimport("sys");
  const numpyLoaded = pyodide.runPython("import sys, realm_web.realm; 'numpy' in sys.modules or 'wasmtime' in sys.modules");
  return {
    python: sys.version, pyodide: pyodide.version, wheels,
    pyodideSeconds: (t1 - t0) / 1000, totalSeconds: (performance.now() - t0) / 1000, numpyLoaded, jspi: hasJSPI,
    simd: newCore.simd, simdNote: newCore.simdNote, arch: newCore.arch,
  };
}

async function load({ url, file, n_ctx, sync = false }) {
  const onProgress = (loaded, total) => post({ type: "progress", loaded, total });
  const t0 = performance.now();
  const viaSDK = hasJSPI && !sync;
  const src = viaSDK ? await sdkSource(file ?? url, { sdkBase, onProgress })
    : file ? fileSource(file, { onProgress }) : await urlSource(url, { onProgress });
  let loaded;
  try {
    // with JSPI, Python blocks on the source's Promises (run_sync): enter it with callPromising
    loaded = viaSDK ? await host.load.callPromising(src, n_ctx ?? null) : host.load(src, n_ctx ?? null);
  } finally {
    await src.close();
  }
  if (realm) { realm.close(); realm.destroy(); }  // the previous model goes once the new one is in
  realm = loaded;
  const info = toJs(host.info(realm));
  return { ...info, size: src.size, fromCache: src.fromCache, source: viaSDK ? "sdk" : "sync",
           loadSeconds: (performance.now() - t0) / 1000 };
}

async function run(id, it) {
  stopRequested = false;
  const t0 = performance.now();
  let text = "", pieces = 0, stopped = false;
  try {
    for (;;) {
      const piece = host.next_piece(it);
      if (piece === undefined || piece === null) break;
      text += piece;
      pieces++;
      post({ id, type: "piece", text: piece });
      await yieldToEvents();
      if (stopRequested) { stopped = true; break; }
    }
  } finally {
    it.close?.();
    it.destroy?.();
  }
  const stats = toJs(host.stats(realm));
  if (stopped) stats.finish_reason = "abort";
  return { text, pieces, stats, seconds: (performance.now() - t0) / 1000 };
}

function generate({ id, prompt, opts }) {
  if (!realm) throw new Error("no model loaded");
  const p = Array.isArray(prompt) ? pyodide.toPy(prompt) : prompt;
  return run(id, host.stream(realm, p, pyodide.toPy(opts ?? {})));
}

function chat({ id, messages, opts }) {
  if (!realm) throw new Error("no model loaded");
  return run(id, host.chat_stream(realm, pyodide.toPy(messages), pyodide.toPy(opts ?? {})));
}

async function unload() {
  if (realm) { realm.close(); realm.destroy(); realm = null; }
  return toJs(host.loaded_models());
}

async function clearCache() {
  const { modelCache } = await import(new URL("cache.js", new URL(sdkBase, self.location.href)).href);
  await modelCache.clear();
  return true;
}

async function run_({ code }) {
  const r = await pyodide.runPythonAsync(code);
  return r?.toJs ? toJs(r) : r;
}

const COMMANDS = { boot, load, generate, chat, unload, clearCache, run: run_ };

self.onmessage = (ev) => {
  const msg = ev.data;
  if (msg.cmd === "stop") { stopRequested = true; return; }
  const fn = COMMANDS[msg.cmd];
  queue = queue.then(async () => {
    try {
      if (!fn) throw new Error(`unknown command ${msg.cmd}`);
      post({ id: msg.id, type: "result", value: await fn(msg) });
    } catch (e) {
      // a Python exception arrives as a PythonError holding the whole traceback: keep its last line
      const text = String(e?.message ?? e);
      const error = e?.type ? text.trim().split("\n").pop() : text;
      post({ id: msg.id, type: "error", error, name: e?.type ?? e?.name ?? "Error" });
    }
  });
};
