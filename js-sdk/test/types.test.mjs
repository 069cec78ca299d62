// index.d.ts type-checks, and describes the API as used (test/types-example.ts), with tsc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SDK } from './helpers.mjs';

test('index.d.ts compiles and fits the documented usage', () => {
  const tsc = path.join(SDK, 'node_modules', 'typescript', 'bin', 'tsc');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'realm-tsc-'));
  const cfg = {
    compilerOptions: {
      strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext',
      lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [], skipLibCheck: false,
      baseUrl: SDK, paths: { 'realm-web': [path.join(SDK, 'index.d.ts')] },
    },
    files: [path.join(SDK, 'index.d.ts'), path.join(SDK, 'test', 'types-example.ts')],
  };
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(cfg));
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
