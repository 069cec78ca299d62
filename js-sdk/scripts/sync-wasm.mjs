// `npm pack` / `npm publish`: ship realm.wasm and the WGSL kernels inside the package
// (js-sdk/wasm/realm.wasm, js-sdk/wgsl/*.wgsl), copied from the repository's build
// (realm_web/wasm/realm.wasm, made by `python build.py`) and wgsl/.
// `--clean` (postpack) removes the copies again, so the repository never holds stale ones:
// in the repository the SDK reads ../realm_web/wasm/realm.wasm and ../wgsl/ directly.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(SDK, '..', 'realm_web', 'wasm', 'realm.wasm');
const dst = path.join(SDK, 'wasm', 'realm.wasm');
const wgslSrc = path.join(SDK, '..', 'wgsl');
const wgslDst = path.join(SDK, 'wgsl');
if (process.argv.includes('--clean')) {
  fs.rmSync(path.dirname(dst), { recursive: true, force: true });
  fs.rmSync(wgslDst, { recursive: true, force: true });
} else {
  if (!fs.existsSync(src)) {
    console.error(`sync-wasm: ${src} is missing: run \`python build.py\` in the repository root first`);
    process.exit(1);
  }
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  fs.copyFileSync(src, dst);
  console.error(`sync-wasm: ${src} -> ${dst} (${fs.statSync(dst).size} bytes)`);
  if (fs.existsSync(wgslSrc)) {
    fs.rmSync(wgslDst, { recursive: true, force: true });
    fs.cpSync(wgslSrc, wgslDst, { recursive: true, filter: (f) => fs.statSync(f).isDirectory() || f.endsWith('.wgsl') });
    console.error(`sync-wasm: ${wgslSrc} -> ${wgslDst}`);
  }
}
