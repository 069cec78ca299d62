// Main-thread client of host/pyodide-worker.js: the Python API of realm_web,
// running in Pyodide in a module worker.
//
//   const py = new PyRealm();                 // boots Pyodide, installs realm_web
//   await py.load("/models/default.gguf");    // or a File
//   const r = await py.generate("The capital of France is", {max_tokens: 16, temperature: 0},
//                               (piece) => ...);
//   // r = {text, stats: {tokens, generate_tps, ...}}
//   py.stop();                                // ends a running generation

export class PyRealm {
  constructor({ workerURL = new URL("./pyodide-worker.js", import.meta.url), onProgress, onLog, ...urls } = {}) {
    this.worker = new Worker(workerURL, { type: "module" });
    this.pending = new Map();
    this.nextId = 1;
    this.onProgress = onProgress;
    this.onLog = onLog;
    this.worker.onmessage = (ev) => this._onMessage(ev.data);
    this.worker.onerror = (ev) => {
      const err = new Error(`worker failed: ${ev.message ?? ev}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.ready = this._send("boot", urls);
  }

  _onMessage(m) {
    if (m.type === "progress") return this.onProgress?.(m.loaded, m.total);
    if (m.type === "log") return this.onLog ? this.onLog(m.text) : console.log("[pyodide]", m.text);
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "piece") return p.onPiece?.(m.text);
    this.pending.delete(m.id);
    if (m.type === "error") p.reject(Object.assign(new Error(m.error), { name: m.name }));
    else p.resolve(m.value);
  }

  _send(cmd, args = {}, onPiece) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onPiece });
      this.worker.postMessage({ id, cmd, ...args });
    });
  }

  // source: a URL or a File/Blob. sync: use the synchronous (non-JSPI) sources even where JSPI exists
  async load(source, { n_ctx, sync } = {}) {
    await this.ready;
    return this._send("load", typeof source === "string" || source instanceof URL
      ? { url: String(source), n_ctx, sync } : { file: source, n_ctx, sync });
  }

  async generate(prompt, opts = {}, onPiece) {
    await this.ready;
    return this._send("generate", { prompt, opts }, onPiece);
  }

  async chat(messages, opts = {}, onPiece) {
    await this.ready;
    return this._send("chat", { messages, opts }, onPiece);
  }

  /** Free the loaded model; resolves with the models Python still holds. */
  async unload() { await this.ready; return this._send("unload"); }

  /** Empty the JS SDK's model cache (models kept from URLs). */
  async clearCache() { await this.ready; return this._send("clearCache"); }

  /** Run Python code in the worker (realm_web is importable); resolves with its last expression. */
  async run(code) { await this.ready; return this._send("run", { code }); }

  stop() { this.worker.postMessage({ cmd: "stop" }); }

  terminate() { this.worker.terminate(); }
}
