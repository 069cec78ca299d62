// Device selection: 'cpu', 'webgpu' or 'auto' -> where a Realm runs.
//
// 'webgpu' runs the core's GPU plan (core/api_gpu.c) with the WebGPU kernels
// (src/webgpu.js) when the page has WebGPU and realm.wasm has the plan export;
// otherwise it falls back to the CPU and says why in realm.deviceNote (and once on
// the console). 'auto' takes the GPU only when the adapter is real hardware: a
// software adapter (SwiftShader, lavapipe) is much slower than the wasm SIMD core.
import { compileCore, chooseWasmArch } from './core.js';
import { isNode } from './env.js';

export const GPU_EXPORT = 'realm_gpu_plan'; // the export whose presence turns the GPU path on

let warned = false;
function warn(note) {
  if (!warned && typeof console !== 'undefined') {
    warned = true;
    console.warn(`realm-web: device 'webgpu' requested: ${note}`);
  }
}

/** { device: 'cpu'|'webgpu', dev: GpuDevice|null, note: string|null } for a requested device. */
export async function resolveDevice(requested = 'auto') {
  const want = requested ?? 'auto';
  if (!['auto', 'webgpu', 'cpu'].includes(want)) {
    throw new TypeError(`device must be 'auto', 'webgpu' or 'cpu' (got ${JSON.stringify(requested)})`);
  }
  if (want === 'cpu') return { device: 'cpu', dev: null, note: null };
  const cpu = (note) => {
    if (want === 'webgpu') warn(note);
    return { device: 'cpu', dev: null, note };
  };
  if (isNode || typeof navigator === 'undefined' || !navigator.gpu) {
    return cpu(`WebGPU is not available here${isNode ? ' (Node has none)' : ' (no navigator.gpu)'}; running on the CPU (wasm SIMD)`);
  }
  const { sigs } = await compileCore({ wasm32: chooseWasmArch() === 'wasm32' });
  if (!sigs[GPU_EXPORT]) return cpu('this build of realm.wasm has no GPU plan export; running on the CPU (wasm SIMD)');
  let dev;
  try {
    const { getGpuDevice } = await import('./webgpu.js');
    dev = await getGpuDevice();
  } catch (e) {
    return cpu(`no WebGPU device (${e.message}); running on the CPU (wasm SIMD)`);
  }
  if (want === 'auto' && dev.isSoftware) {
    return { device: 'cpu', dev: null, note: `the only WebGPU adapter is a software one (${dev.describe()}), slower than the CPU core: running on the CPU (wasm SIMD); device: 'webgpu' uses it anyway` };
  }
  return { device: 'webgpu', dev, note: null };
}

/** For a failed GPU load: the CPU fallback's note. */
export function gpuFailedNote(e) {
  const note = `the WebGPU backend failed (${e && e.message}); running on the CPU (wasm SIMD)`;
  warn(note);
  return note;
}
