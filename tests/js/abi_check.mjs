// The JS host against the ABI description (js-sdk/src/abi.js, from core/abi.json):
// every build's exports and their wasm types, the version check, error kinds -> classes,
// null handles. Run by tests/test_abi.py with Node >= 22 (Memory64); prints one JSON line.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [sdk, wasmDir] = process.argv.slice(2);
const abi = await import(pathToFileURL(`${sdk}/src/abi.js`));
const core = await import(pathToFileURL(`${sdk}/src/core.js`));

const builds = ['realm.wasm', 'realm-mt.wasm', 'realm-relaxed.wasm', 'realm-mt-relaxed.wasm', 'realm32.wasm', 'realm32-mt.wasm', 'realm32-relaxed.wasm', 'realm32-mt-relaxed.wasm'];
for (const b of builds) {
  const ptr = b.startsWith('realm32') ? 'i32' : 'i64';   // only pointers narrow in the wasm32 builds (realm32*)
  const bytes = readFileSync(`${wasmDir}/${b}`);
  const sigs = core.parseSignatures(new Uint8Array(bytes));
  const names = Object.keys(sigs).filter((n) => n.startsWith('realm_')).sort();
  assert.deepEqual(names, Object.keys(abi.EXPORTS).sort(), `${b}: exports differ from core/abi.json`);
  for (const [n, [params, ret]] of Object.entries(abi.EXPORTS)) {
    const want = params.map((t) => (t === 'ptr' ? ptr : t));
    assert.deepEqual(sigs[n].params, want, `${b}: ${n} params`);
    assert.deepEqual(sigs[n].results, ret ? [ret === 'ptr' ? ptr : ret] : [], `${b}: ${n} result`);
  }
}

// a module of another ABI version is refused
assert.throws(() => new core.WasmCore({ exports: { realm_abi_version: () => abi.ABI_VERSION + 1, memory: {} } },
  { realm_abi_version: { params: [], results: ['i32'] } }),
  new RegExp(`speaks realm ABI ${abi.ABI_VERSION + 1}; this host speaks ${abi.ABI_VERSION}`));

// error kinds become classes; null handles are refused by name
core.setWasmSource(pathToFileURL(`${wasmDir}/realm.wasm`));
const c = await core.WasmCore.create({ threads: 1, simd: 'simd128' });
assert.equal(c.call('realm_abi_version'), abi.ABI_VERSION);
assert.equal(c.call('realm_session_n_past', 0), 0);
let e = c.error();
assert.ok(e instanceof core.RealmError && !(e instanceof core.ContextOverflowError), e.name);
assert.match(e.message, /realm_session_n_past: null session handle/);
assert.equal(abi.ERROR_KINDS[c.call('realm_last_error_kind')], 'invalid_argument');
assert.equal(c.call('realm_alloc', 2 ** 52), 0);
e = c.error('big');
assert.ok(e instanceof core.OutOfMemoryError, e.name);
const buf = c.alloc(64);
c.write(buf, new TextEncoder().encode('GGUF\x03\x00\x00\x00'));
assert.equal(c.call('realm_model_open', buf, 8, 8), 0);
assert.ok(c.error() instanceof core.ModelFormatError);
const info = abi.readStruct('SamplerParams', new DataView(abi.packStruct('SamplerParams', { temperature: 0.5, top_k: 7, seed: 2 ** 40 }).buffer));
assert.deepEqual([info.temperature, info.top_k, info.seed], [0.5, 7, 2 ** 40]);
console.log(JSON.stringify({ ok: true, builds: builds.length, exports: Object.keys(abi.EXPORTS).length }));
