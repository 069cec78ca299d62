// The import graph of src/: no module imports itself back, directly or through others
// (static imports, re-exports and dynamic import() of a literal path all count).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { SDK } from './helpers.mjs';

const SRC = path.join(SDK, 'src');

/** {module: [modules it imports]} for src/*.js (relative specifiers only). */
export function importGraph(dir = SRC) {
  const graph = {};
  const spec = /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"](\.[^'"]+)['"]|\bimport\s*\(\s*['"](\.[^'"]+)['"]\s*\)|^\s*import\s*['"](\.[^'"]+)['"]/gm;
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.js')).sort()) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    const deps = new Set();
    for (const m of text.matchAll(spec)) {
      const target = path.relative(dir, path.resolve(dir, m[1] || m[2] || m[3]));
      if (!target.startsWith('..')) deps.add(target);
    }
    graph[f] = [...deps].sort();
  }
  return graph;
}

/** Every cycle (as a path a -> ... -> a), each reported once. */
export function cycles(graph) {
  const out = [];
  const state = {}; // undefined: new, 1: on the stack, 2: done
  const stack = [];
  const visit = (n) => {
    state[n] = 1;
    stack.push(n);
    for (const d of graph[n] || []) {
      if (state[d] === 1) out.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (!state[d]) visit(d);
    }
    stack.pop();
    state[n] = 2;
  };
  for (const n of Object.keys(graph)) if (!state[n]) visit(n);
  return out;
}

test('the cycle finder finds cycles (direct, through others, dynamic)', () => {
  assert.deepEqual(cycles({ 'a.js': ['b.js'], 'b.js': ['a.js'] }), ['a.js -> b.js -> a.js']);
  assert.deepEqual(cycles({ 'a.js': ['b.js'], 'b.js': ['c.js'], 'c.js': ['a.js'], 'd.js': ['a.js'] }), ['a.js -> b.js -> c.js -> a.js']);
  assert.deepEqual(cycles({ 'a.js': ['b.js'], 'b.js': [], 'c.js': ['a.js', 'b.js'] }), []);
  const tmp = fs.mkdtempSync(path.join(SDK, 'test', '.imports-'));
  try {
    fs.writeFileSync(path.join(tmp, 'x.js'), "import { a } from './y.js';\nexport { b } from './z.js';\n");
    fs.writeFileSync(path.join(tmp, 'y.js'), "// import { x } from './x.js';\nexport const a = 1;\n");
    fs.writeFileSync(path.join(tmp, 'z.js'), "export const b = 2;\nasync function f() { return import('./x.js'); }\n");
    const g = importGraph(tmp);
    assert.deepEqual(g, { 'x.js': ['y.js', 'z.js'], 'y.js': [], 'z.js': ['x.js'] });
    assert.deepEqual(cycles(g), ['x.js -> z.js -> x.js']);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('src/ has no import cycles', () => {
  const g = importGraph();
  assert.ok(Object.keys(g).length > 10 && g['index.js'].includes('realm.js'), JSON.stringify(g));
  assert.ok(g['realm.js'].includes('worker-client.js'), 'dynamic imports are in the graph');
  assert.deepEqual(cycles(g), [], 'import cycles in js-sdk/src');
});
