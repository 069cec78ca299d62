// `npm pack` / `npm publish`: ship realm.wasm, realm-mt.wasm (threads), realm32.wasm (no Memory64), their relaxed-SIMD builds and the WGSL
// kernels inside the package (js-sdk/wasm/, js-sdk/wgsl/*.wgsl), copied from the
// repository's build (realm_web/wasm/, made by `python build.py`) and wgsl/.
// `--clean` (postpack) removes the copies again, so the repository never holds stale ones:
// in the repository the SDK reads ../realm_web/wasm/realm.wasm and ../wgsl/ directly.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FILES = ['realm.wasm', 'realm-mt.wasm', 'realm-relaxed.wasm', 'realm-mt-relaxed.wasm', 'realm32.wasm', 'realm32-relaxed.wasm'];
const srcDir = path.join(SDK, '..', 'realm_web', 'wasm');
const dst = path.join(SDK, 'wasm', 'realm.wasm');
const wgslSrc = path.join(SDK, '..', 'wgsl');
const wgslDst = path.join(SDK, 'wgsl');
if (process.argv.includes('--clean')) {
  fs.rmSync(path.dirname(dst), { recursive: true, force: true });
  fs.rmSync(wgslDst, { recursive: true, force: true });
} else {
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  for (const f of FILES) {
    const src = path.join(srcDir, f);
    if (!fs.existsSync(src)) {
      console.error(`sync-wasm: ${src} is missing: run \`python build.py\` in the repository root first`);
      process.exit(1);
    }
    fs.copyFileSync(src, path.join(path.dirname(dst), f));
    console.error(`sync-wasm: ${src} -> ${path.join(path.dirname(dst), f)} (${fs.statSync(src).size} bytes)`);
  }
  if (fs.existsSync(wgslSrc)) {
    fs.rmSync(wgslDst, { recursive: true, force: true });
    fs.cpSync(wgslSrc, wgslDst, { recursive: true, filter: (f) => fs.statSync(f).isDirectory() || f.endsWith('.wgsl') });
    console.error(`sync-wasm: ${wgslSrc} -> ${wgslDst}`);
  }
}
