// The WebGPU backend: the core's plan of a forward step (core/api_gpu.c, docs/GPU.md),
// executed with the browser's WebGPU. The JS twin of realm_web/gpu/ (device, kernels,
// plan, weights, runner, session).
//
// The core still owns the model: it parses the header, tokenizes, writes the plan
// (which WGSL kernels, which buffers, which ops with which parameters) and samples
// (realm_sampler_*, fed the GPU's argmax / top-k candidates / logits row). The
// weights never enter wasm memory: they stream from the source straight into one GPU
// buffer per tensor part. One GpuModel per source per device (shared by every session
// of it, like the CPU weights); each GpuSession has its own KV cache and activations.
import { RealmError, ContextOverflowError } from './errors.js';
import { isNode } from './env.js';
import { packSampler, SAMPLER_DEFAULTS } from './sampling.js';
import { readLogprobs, withGrammar } from './session.js';
import { CONSTANTS, EVAL_BATCH, STRUCTS, packStruct } from './abi.js';

export const PLAN_ABI = CONSTANTS.GPU_OPTIONS_VERSION;
const OPT_F16 = 1, OPT_SUBGROUPS = 2, OPT_SOFTWARE = 4;
const UNIFORM_ALIGN = 256;
const STEP_BODY = 0, STEP_HEAD = 1, STEP_LORA_HEAD = 2; // 2: the head's LoRA ops, [R, 0, r0, 0]
const ROPE_CHUNK = 256;
const UPLOAD_SYNC = 256 << 20; // wait for the queue every this many uploaded bytes (bounds staging memory)

export class GPUUnavailable extends RealmError {
  constructor(m, o) { super(m, o); this.name = 'GPUUnavailable'; }
}

// ------------------------------------------------------------------ device

// limits raised to what the adapter offers (the WebGPU defaults are far lower)
const LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension', 'maxUniformBufferBindingSize', 'maxBindGroups'];
const OPTIONAL_FEATURES = ['shader-f16', 'subgroups'];

export class GpuDevice {
  constructor(adapter, device, info) {
    this.adapter = adapter;
    this.device = device;
    this.info = info;
    this.limits = device.limits;
    this.features = device.features;
    const text = `${info.vendor || ''} ${info.architecture || ''} ${info.device || ''} ${info.description || ''}`.toLowerCase();
    this.isSoftware = !!(info.isFallbackAdapter || adapter.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|software/.test(text));
    this.lost = false;
    this._modules = new Map();
    this._pipelines = new Map();
  }

  describe() {
    const i = this.info;
    const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'WebGPU adapter';
    return `${name}${this.isSoftware ? ' (software)' : ''}`;
  }

  /** The GpuOptions realm_gpu_plan takes (core/abi.json, docs/GPU.md). */
  gpuOptions({ maxBatch = EVAL_BATCH, forceTpr = 0 } = {}) { // tokens per body run: the CPU core's batch
    const L = this.limits;
    const flags = (this.features.has('shader-f16') ? OPT_F16 : 0) | (this.features.has('subgroups') ? OPT_SUBGROUPS : 0) |
      (this.isSoftware ? OPT_SOFTWARE : 0);
    return {
      version: PLAN_ABI, flags,
      max_binding: Number(L.maxStorageBufferBindingSize || 128 << 20), max_buffer: Number(L.maxBufferSize || 256 << 20),
      max_invocations: L.maxComputeInvocationsPerWorkgroup || 256, max_wg_x: L.maxComputeWorkgroupSizeX || 256,
      max_groups: L.maxComputeWorkgroupsPerDimension || 65535, max_wg_storage: L.maxComputeWorkgroupStorageSize || 16384,
      subgroup_min: this.info.subgroupMinSize || 0, max_batch: maxBatch, force_tpr: forceTpr,
    };
  }

  /** A compute pipeline for a plan kernel (cached per file, entry, defines, constants). */
  async pipeline(k) {
    const defines = [...(k.defines || [])].sort();
    if (defines.includes('SUBGROUPS')) defines.push('SUBGROUPS_ENABLE'); // browsers want `enable subgroups;`
    const consts = Object.entries(k.constants || {}).sort(([a], [b]) => (a < b ? -1 : 1));
    const entry = k.entry || 'main';
    const key = `${k.file}|${entry}|${defines.join(',')}|${consts.map(([a, b]) => `${a}=${b}`).join(',')}`;
    let p = this._pipelines.get(key);
    if (!p) {
      p = (async () => {
        const mkey = `${k.file}|${defines.join(',')}`;
        let mod = this._modules.get(mkey);
        if (!mod) {
          const code = await preprocess(k.file, new Set(defines));
          mod = this.device.createShaderModule({ label: k.file, code });
          const info = mod.getCompilationInfo ? await mod.getCompilationInfo() : { messages: [] };
          const errs = info.messages.filter((m) => m.type === 'error');
          if (errs.length) {
            const lines = code.split('\n');
            throw new RealmError(`WebGPU: ${k.file} [${defines.join(' ')}] does not compile: ` +
              errs.map((m) => `${m.lineNum}:${m.linePos}: ${m.message} | ${(lines[m.lineNum - 1] || '').trim()}`).join('; '));
          }
          this._modules.set(mkey, mod);
        }
        this.device.pushErrorScope('validation');
        let pipe;
        try {
          pipe = await this.device.createComputePipelineAsync({
            label: `${k.file}:${entry}`, layout: 'auto', compute: { module: mod, entryPoint: entry, constants: Object.fromEntries(consts) },
          });
        } finally {
          const err = await this.device.popErrorScope();
          if (err) throw new RealmError(`WebGPU: kernel ${k.file} [${defines.join(' ')}] failed to compile: ${err.message}`);
        }
        return pipe;
      })();
      p.catch(() => this._pipelines.delete(key));
      this._pipelines.set(key, p);
    }
    return p;
  }

  storage(nbytes, label, copySrc = true) {
    const U = GPUBufferUsage;
    return this.device.createBuffer({ label, size: Math.max(16, (nbytes + 15) & ~15), usage: U.STORAGE | U.COPY_DST | (copySrc ? U.COPY_SRC : 0) });
  }

  uniform(nbytes, label) {
    return this.device.createBuffer({ label, size: Math.max(16, (nbytes + 15) & ~15), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }
}

let devicePromise = null;

/** The page's (or worker's) WebGPU device, created once with raised limits. */
export function getGpuDevice() {
  if (!devicePromise) {
    devicePromise = (async () => {
      const gpu = typeof navigator !== 'undefined' ? navigator.gpu : undefined;
      if (!gpu) throw new GPUUnavailable(isNode ? 'Node has no WebGPU' : 'WebGPU is not available here (no navigator.gpu)');
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new GPUUnavailable('no WebGPU adapter');
      const info = adapter.info || (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {}) || {};
      const requiredLimits = {};
      for (const k of LIMITS) if (adapter.limits[k] !== undefined) requiredLimits[k] = adapter.limits[k];
      const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
      const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
      const d = new GpuDevice(adapter, device, info);
      device.lost.then(() => { d.lost = true; if (devicePromise && devicePromise.d === d) devicePromise = null; });
      devicePromise.d = d;
      return d;
    })();
    devicePromise.catch(() => { devicePromise = null; });
  }
  return devicePromise;
}

// ------------------------------------------------------------------ kernels

let wgslBase = null;
const wgslText = new Map();

/** Where the WGSL kernels are read from (a URL or, in Node, a directory). */
export function setWgslBase(url) { wgslBase = url; wgslText.clear(); }

async function readWgsl(name) {
  if (wgslText.has(name)) return wgslText.get(name);
  const bases = wgslBase ? [new URL(String(wgslBase).replace(/\/?$/, '/'), globalThis.location?.href)]
    : [new URL('../wgsl/', import.meta.url), new URL('../../wgsl/', import.meta.url), new URL('../../realm_web/wgsl/', import.meta.url)];
  const errors = [];
  for (const base of bases) {
    const url = new URL(name, base);
    try {
      let text;
      if (url.protocol === 'file:') {
        const fs = await import('node:fs/promises');
        const { fileURLToPath } = await import('node:url');
        text = await fs.readFile(fileURLToPath(url), 'utf8');
      } else {
        const res = await fetch(url);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        text = await res.text();
      }
      wgslText.set(name, text);
      if (!wgslBase) wgslBase = base.href; // stick to the directory that worked
      return text;
    } catch (e) {
      errors.push(`${url.href}: ${e.message}`);
    }
  }
  throw new RealmError(`WGSL kernel ${name} not found (${errors.join('; ')})`);
}

/** The WGSL module for kernel file `name` with `defines` set (//#include, //#if, //#else, //#endif). */
export async function preprocess(name, defines = new Set()) {
  const out = [];
  const seen = new Set();
  const emit = async (n) => {
    if (seen.has(n)) return;
    seen.add(n);
    const stack = [];
    for (const line of (await readWgsl(n)).split(/\r?\n/)) {
      const s = line.trim();
      if (s.startsWith('//#')) {
        const rest = s.slice(3);
        const sp = rest.indexOf(' ');
        const word = sp < 0 ? rest : rest.slice(0, sp);
        const arg = sp < 0 ? '' : rest.slice(sp + 1).trim();
        if (word === 'if') stack.push(defines.has(arg));
        else if (word === 'else') { if (!stack.length) throw new RealmError(`${n}: //#else without //#if`); stack[stack.length - 1] = !stack[stack.length - 1]; }
        else if (word === 'endif') { if (!stack.length) throw new RealmError(`${n}: //#endif without //#if`); stack.pop(); }
        else if (word === 'include') { if (stack.every(Boolean)) await emit(arg); }
        else throw new RealmError(`${n}: unknown directive ${s}`);
        continue;
      }
      if (stack.every(Boolean)) out.push(line);
    }
    if (stack.length) throw new RealmError(`${n}: unterminated //#if`);
  };
  await emit(name);
  return out.join('\n') + '\n';
}

// ------------------------------------------------------------------ plan

/** Bind the model's tensors in the core without weights (after realm_model_load(m, 1)); its plan. */
export function buildPlan(model, dev) {
  const c = model.core;
  if (!c.has('realm_gpu_plan')) throw new GPUUnavailable('this realm.wasm has no GPU plan export');
  if (!c.call('realm_gpu_prepare', model.handle)) throw c.error(model.name);
  const op = c.alloc(STRUCTS.GpuOptions.size);
  const lp = c.alloc(8);
  let text;
  try {
    c.write(op, packStruct('GpuOptions', dev.gpuOptions()));
    const p = c.call('realm_gpu_plan', model.handle, op, lp);
    if (!p) throw c.error('GPU plan');
    const n = Number(c.dv(lp, 8).getBigUint64(0, true));
    text = c.readString(p, n);
    c.free(p);
  } finally {
    c.free(op);
    c.free(lp);
  }
  const plan = JSON.parse(text);
  if (plan.abi !== PLAN_ABI) throw new RealmError(`GPU plan ABI ${plan.abi} (this host speaks ${PLAN_ABI})`);
  return plan;
}

/**
 * The core's ops and tensors that apply [[loraEntry, scale], ...] (lora.js) on top of the
 * model's plan (realm_gpu_lora_plan; docs/GPU.md, "LoRA adapters").
 */
export function buildLoraPlan(model, dev, pairs) {
  const c = model.core;
  if (!c.has('realm_gpu_lora_plan')) throw new GPUUnavailable('this realm.wasm has no GPU LoRA plan export');
  const n = pairs.length;
  const op = c.alloc(STRUCTS.GpuOptions.size);
  const ap = c.alloc(Math.max(12 * n, 16));
  const lp = c.alloc(8);
  let text;
  try {
    c.write(op, packStruct('GpuOptions', dev.gpuOptions()));
    const dv = c.dv(ap, Math.max(12 * n, 16));
    pairs.forEach(([e, sc], i) => {
      if (!e.handle) throw new RealmError(`LoRA adapter ${e.name} was unloaded`);
      if (e.model !== model) throw new RealmError(`LoRA adapter ${e.name} was loaded for another model`);
      dv.setFloat32(c.ptrBytes * n + 4 * i, sc, true);
    });
    c.setHandles(dv, pairs.map(([e]) => e.handle));
    const p = c.call('realm_gpu_lora_plan', model.handle, op, ap, ap + c.ptrBytes * n, n, lp);
    if (!p) throw c.error('GPU LoRA plan');
    const len = Number(c.dv(lp, 8).getBigUint64(0, true));
    text = c.readString(p, len);
    c.free(p);
  } finally {
    c.free(op);
    c.free(ap);
    c.free(lp);
  }
  const plan = JSON.parse(text);
  if (plan.abi !== PLAN_ABI) throw new RealmError(`GPU LoRA plan ABI ${plan.abi} (this host speaks ${PLAN_ABI})`);
  return plan;
}

// ------------------------------------------------------------------ weights

/** A model's plan and weights on one device, shared by its sessions. */
export class GpuModel {
  constructor(dev, plan) {
    this.dev = dev;
    this.plan = plan;
    this.parts = new Map(); // "tensor:part" -> GPUBuffer
    this.nbytes = 0;
    this.ropeFreqs = null;
    this.ropeFreqsLong = null; // phi3's LongRoPE: { minCtx, factors } for sessions of minCtx tokens or more
    // static op parameters: one uniform buffer, each op's words at a 256-byte offset
    this.paramOffsets = {};
    const words = [];
    let off = 0;
    for (const [name, ops] of Object.entries(plan.programs)) {
      this.paramOffsets[name] = ops.map((o) => {
        const w = new Uint32Array(UNIFORM_ALIGN / 4);
        w.set(o.p || []);
        words.push(w);
        const at = off;
        off += UNIFORM_ALIGN;
        return at;
      });
    }
    const data = new Uint32Array(Math.max(4, words.length * (UNIFORM_ALIGN / 4)));
    words.forEach((w, i) => data.set(w, i * (UNIFORM_ALIGN / 4)));
    this.params = dev.device.createBuffer({ label: 'op params', size: data.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    dev.device.queue.writeBuffer(this.params, 0, data);
    this.loraTensors = new Map(); // "handle:ptr" -> [adapter entry, GPUBuffer]: each adapter tensor once
  }

  buffer(tensor, part) { return this.parts.get(`${tensor}:${part}`); }

  /** The GPU buffer of a LoRA plan's tensor t of adapter entry e, uploaded from the core's memory once. */
  loraTensor(e, t) {
    const key = `${e.handle}:${t.ptr}`;
    const hit = this.loraTensors.get(key);
    if (hit && hit[0] === e && e.handle) return hit[1];
    const n = Number(t.nbytes);
    const buf = this.dev.storage(n + 4, t.name, false);
    const bytes = new Uint8Array((n + 3) & ~3);
    bytes.set(e.model.core.u8(Number(t.ptr), n));
    this.dev.device.queue.writeBuffer(buf, 0, bytes);
    this.loraTensors.set(key, [e, buf]);
    return buf;
  }

  /**
   * Stream the tensor parts from `reader` (positioned at file offset `have`; the first
   * `have` bytes of the file are in `head`) into their GPU buffers, in file order.
   */
  async upload(reader, head, have, { onBytes, signal, name = 'model' } = {}) {
    const q = this.dev.device.queue;
    const jobs = [];
    for (const t of this.plan.tensors) {
      t.parts.forEach((p, pi) => {
        const n = Number(p.nbytes);
        // +4: kernels read whole words, possibly one past an unaligned end
        const buf = this.dev.storage(n + 4, `${t.name}#${pi}`, false);
        this.parts.set(`${t.id}:${pi}`, buf);
        this.nbytes += n;
        jobs.push({ off: Number(p.offset), n, buf, done: 0, carry: new Uint8Array(4), nc: 0 });
      });
    }
    const rf = this.plan.rope_freqs, rl = this.plan.rope_freqs_long;
    if (rf) jobs.push({ off: Number(rf.offset), n: Number(rf.nbytes), rope: new Uint8Array(Number(rf.nbytes)), done: 0 });
    if (rl) jobs.push({ off: Number(rl.offset), n: Number(rl.nbytes), rope: new Uint8Array(Number(rl.nbytes)), done: 0, long: true });
    jobs.sort((a, b) => a.off - b.off);
    let since = 0;
    // write bytes [pos, pos + chunk.length) of the file into every part they overlap
    const feed = async (chunk, pos) => {
      for (const j of jobs) {
        if (j.off >= pos + chunk.length) break;
        const a = Math.max(pos, j.off + j.done), b = Math.min(pos + chunk.length, j.off + j.n);
        if (a >= b) continue;
        const piece = chunk.subarray(a - pos, b - pos);
        if (j.rope) { j.rope.set(piece, j.done); j.done += piece.length; continue; }
        let src = piece;
        let at = j.done - j.nc; // buffer offset of the carried bytes (4-aligned)
        if (j.nc) { // finish the partial word first
          const k = Math.min(4 - j.nc, src.length);
          j.carry.set(src.subarray(0, k), j.nc);
          j.nc += k;
          j.done += k;
          src = src.subarray(k);
          if (j.nc < 4 && j.done < j.n) continue;
          q.writeBuffer(j.buf, at, j.carry, 0, 4);
          at += 4;
          j.nc = 0;
        }
        const whole = src.length & ~3;
        if (whole) { q.writeBuffer(j.buf, at, src, 0, whole); since += whole; }
        j.done += src.length;
        const rest = src.length - whole;
        if (rest) { j.carry.fill(0); j.carry.set(src.subarray(whole)); j.nc = rest; }
        if (j.done === j.n && j.nc) { // the tail word, zero-padded
          q.writeBuffer(j.buf, j.n - j.nc, j.carry, 0, 4);
          j.nc = 0;
        }
      }
      if (since >= UPLOAD_SYNC) { since = 0; await q.onSubmittedWorkDone(); }
    };
    const end = jobs.reduce((m, j) => Math.max(m, j.off + j.n), 0);
    if (have) await feed(head.subarray(0, have), 0);
    let pos = have;
    while (pos < end) {
      if (signal && signal.aborted) throw signal.reason;
      const chunk = await reader.read(Math.min(8 << 20, end - pos));
      if (!chunk) throw new RealmError(`${name}: the file ended inside the tensor data (${pos} of ${end} bytes)`);
      await feed(chunk, pos);
      pos += chunk.length;
      if (onBytes) onBytes(chunk.length);
    }
    for (const j of jobs) if (j.done !== j.n) throw new RealmError(`${name}: tensor data incomplete (${j.done} of ${j.n} bytes at ${j.off})`);
    const ropeJob = jobs.find((j) => j.rope && !j.long), longJob = jobs.find((j) => j.long);
    if (ropeJob) this.ropeFreqs = new Float32Array(ropeJob.rope.buffer);
    if (longJob) this.ropeFreqsLong = { minCtx: Number(this.plan.rope_freqs_long.min_ctx), factors: new Float32Array(longJob.rope.buffer) };
    await q.onSubmittedWorkDone();
    return pos;
  }

  destroy() {
    for (const b of this.parts.values()) b.destroy();
    this.parts.clear();
    this.loraTensors.clear();
    if (this.params) this.params.destroy();
    this.params = null;
  }
}

// ------------------------------------------------------------------ runner

function gridAt(g, n) {
  return g.map(([c, div]) => Math.max(1, Number(c) * (div ? Math.ceil(n / Number(div)) : 1)));
}

/** The compiled programs of one session (its buffers bound into every op). */
class Runner {
  static async create(gm, bufs, stepBufs) {
    const r = new Runner();
    const dev = gm.dev;
    const kernels = gm.plan.kernels;
    r.programs = {};
    dev.device.pushErrorScope('validation');
    for (const [name, ops] of Object.entries(gm.plan.programs)) {
      const out = [];
      for (let i = 0; i < ops.length; i++) {
        const o = ops[i];
        const resources = [
          { buffer: gm.params, offset: gm.paramOffsets[name][i], size: UNIFORM_ALIGN },
          { buffer: stepBufs[o.step], offset: 0, size: 16 },
        ];
        for (const b of o.b) {
          const buf = typeof b === 'string' ? bufs[b] : gm.buffer(b[0], b[1]);
          if (!buf) throw new RealmError(`GPU plan: op ${o.label} binds unknown buffer ${JSON.stringify(b)}`);
          resources.push({ buffer: buf, offset: 0, size: buf.size });
        }
        out.push(await compileOp(dev, kernels, o, resources));
      }
      r.programs[name] = out;
    }
    r.hooks = new Map(); // LoRA slot -> the session's adapters' ops (after the op hooking it)
    const err = await dev.device.popErrorScope();
    if (err) throw new RealmError(`WebGPU: building the session's programs failed: ${err.message}`);
    return r;
  }

  record(pass, program, n) {
    let last = null;
    const dispatch = (op) => {
      const one = n === 1 && op.pipe1;
      const pipe = one ? op.pipe1 : op.pipe;
      if (pipe !== last) { pass.setPipeline(pipe); last = pipe; }
      pass.setBindGroup(0, one ? op.bg1 : op.bg);
      const [x, y, z] = gridAt(one ? op.grid1 : op.grid, n);
      pass.dispatchWorkgroups(x, y, z);
    };
    for (const op of this.programs[program]) {
      dispatch(op);
      if (op.hook != null && this.hooks.has(op.hook)) for (const lo of this.hooks.get(op.hook)) dispatch(lo);
    }
  }
}

async function compileOp(dev, kernels, o, resources) {
  const compile = async (kidx) => {
    const pipe = await dev.pipeline(kernels[kidx]);
    const bg = dev.device.createBindGroup({
      label: o.label, layout: pipe.getBindGroupLayout(0),
      entries: resources.map((res, j) => ({ binding: j, resource: res })),
    });
    return [pipe, bg];
  };
  const [pipe, bg] = await compile(o.k);
  const op = { label: o.label, pipe, bg, grid: o.g, pipe1: null, bg1: null, grid1: null, hook: o.hook ?? null };
  if (o.k1 !== undefined) { [op.pipe1, op.bg1] = await compile(o.k1); op.grid1 = o.g1; }
  return op;
}

/**
 * One session's LoRA adapters on the GPU: the core's LoRA plan, its tensors (shared per
 * model and adapter), the session's scratch buffers and parameter words, and the compiled
 * ops by the slot they follow.
 */
async function loraOps(session, pairs) {
  const gm = session.gm, dev = gm.dev;
  const plan = buildLoraPlan(session.model, dev, pairs);
  if (!plan.ops.length) return null; // every scale 0: the base model exactly
  const tensors = new Map(plan.tensors.map((t) => [t.id, gm.loraTensor(pairs[t.adapter][0], t)]));
  const bufs = {};
  for (const b of plan.buffers) bufs[b.name] = dev.storage(Number(b.bytes), b.name);
  const words = new Uint32Array(plan.ops.length * (UNIFORM_ALIGN / 4));
  plan.ops.forEach((o, i) => words.set(o.p || [], i * (UNIFORM_ALIGN / 4)));
  const params = dev.device.createBuffer({ label: 'lora op params', size: words.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  dev.device.queue.writeBuffer(params, 0, words);
  const hooks = new Map();
  dev.device.pushErrorScope('validation');
  for (let i = 0; i < plan.ops.length; i++) {
    const o = plan.ops[i];
    const resources = [
      { buffer: params, offset: i * UNIFORM_ALIGN, size: UNIFORM_ALIGN },
      { buffer: session._step[o.step], offset: 0, size: 16 },
    ];
    for (const b of o.b) {
      const buf = typeof b === 'string' ? (bufs[b] || session._bufs[b]) : tensors.get(b[0]);
      if (!buf) throw new RealmError(`GPU LoRA plan: op ${o.label} binds unknown buffer ${JSON.stringify(b)}`);
      resources.push({ buffer: buf, offset: 0, size: buf.size });
    }
    const op = await compileOp(dev, plan.kernels, o, resources);
    if (!hooks.has(o.slot)) hooks.set(o.slot, []);
    hooks.get(o.slot).push(op);
  }
  const err = await dev.device.popErrorScope();
  if (err) throw new RealmError(`WebGPU: building the LoRA ops failed: ${err.message}`);
  return { hooks, destroy() { for (const b of Object.values(bufs)) b.destroy(); params.destroy(); } };
}

// ------------------------------------------------------------------ session

/**
 * A session on the GPU with the interface of session.js's Session (eval, logits,
 * setSampler, sample, step, nPast, tokens, truncate, close); eval, logits, sample and
 * step return Promises. Sampling is the core's sampler on the GPU's candidates.
 */
export class GpuSession {
  static async create(model, nCtx) {
    const s = new GpuSession(model, nCtx);
    try {
      await s._init();
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  constructor(model, nCtx) {
    this.model = model;
    this.core = model.core;
    const gm = this.gm = model.gpu;
    this.dev = gm.dev;
    const plan = this.plan = gm.plan;
    this.nVocab = Number(plan.model.n_vocab);
    this.nCtx = Number(nCtx);
    this.B = Number(plan.max_batch);
    this.maxLogitsRows = Number(plan.max_logits_rows);
    this.ropePairs = Number(plan.model.rope_dim) / 2;
    this._tokens = [];
    this._logitsHost = null;
    this._head = [0, 0, 0, 0];
    this._headValid = false;
    this._ropeFilled = 0;
    this._bufs = {};
    this._readback = null;
    this._sampler = 0;
    this._gstate = 0;   // the core's matcher state of the grammar set (realm_grammar_state_new), or 0
    this._lp = 0;       // logprobs() buffer
    this.handle = 1;
  }

  async _init() {
    const plan = this.plan;
    if (this.nCtx < 1) throw new RealmError(`context size must be at least 1, got ${this.nCtx}`);
    if (this.nCtx > Number(plan.max_ctx)) {
      throw new RealmError(`a context of ${this.nCtx} tokens does not fit this adapter's largest storage binding (at most ${plan.max_ctx} here)`);
    }
    for (const b of plan.buffers) this._bufs[b.name] = this.dev.storage(Number(b.bytes) + Number(b.ctx_bytes) * this.nCtx, b.name);
    this._step = [this.dev.uniform(16, 'step body'), this.dev.uniform(16, 'step head'), this.dev.uniform(16, 'step lora head')];
    const c = this.core;
    this._sampler = c.call('realm_sampler_new', 0);
    if (!this._sampler) throw c.error();
    this._histCap = 0;
    this._hist = 0;
    this._cand = c.alloc(4 * (2 + 2 * Number(plan.max_topk)));
    this._sp = c.alloc(STRUCTS.SamplerParams.size);
    this._freqs = 0;
    const rl = this.gm.ropeFreqsLong;
    const freqs = rl && this.nCtx >= rl.minCtx ? rl.factors : this.gm.ropeFreqs; // the context picks (LongRoPE)
    if (freqs) {
      this._freqs = c.alloc(freqs.byteLength);
      c.write(this._freqs, new Uint8Array(freqs.buffer));
    }
    this._ropeTmp = c.alloc(ROPE_CHUNK * this.ropePairs * 8);
    this.setSampler({ temperature: 0 });
    this.runner = await Runner.create(this.gm, this._bufs, this._step);
  }

  close() {
    if (!this.handle) return;
    this.handle = 0;
    for (const b of Object.values(this._bufs)) b.destroy();
    this._bufs = {};
    if (this._step) for (const b of this._step) b.destroy();
    if (this._loraOps) { this._loraOps.destroy(); this._loraOps = null; }
    if (this._readback) { this._readback.destroy(); this._readback = null; }
    const c = this.core;
    if (c && this._sampler) {
      c.call('realm_sampler_free', this._sampler);
      c.call('realm_grammar_state_free', this._gstate);
      for (const p of ['_hist', '_cand', '_sp', '_freqs', '_ropeTmp', '_lp']) c.free(this[p] || 0);
      this._sampler = 0;
      this._gstate = 0;
    }
  }

  _check() { if (!this.handle) throw new RealmError('session is closed'); }

  /** Resolves when the GPU has finished the work submitted so far. */
  async sync() { await this.dev.device.queue.onSubmittedWorkDone(); }

  get nPast() { return this._tokens.length; }
  tokens() { return this._tokens.slice(); }
  truncate(n) { if (n < this._tokens.length) this._tokens.length = Math.max(0, n | 0); }

  /**
   * Apply LoRA adapters [[entry, scale], ...] (lora.js acquireLora; [] removes them) from the
   * next eval, with the ops of the core's LoRA plan; as Session.setLora, a change empties the
   * cache and returns true.
   */
  async setLora(pairs) {
    this._check();
    if (pairs.length > 8) throw new RealmError(`at most 8 LoRA adapters per session, got ${pairs.length}`);
    const same = pairs.map(([e, sc]) => `${e.handle}:${sc}`).join(',') === (this._loraKey || '');
    if (same && pairs.every(([e]) => e.handle) && (this._loraPairs || []).every(([e], i) => e === pairs[i][0])) return false;
    const ops = pairs.length ? await loraOps(this, pairs) : null;
    if (this._loraOps) this._loraOps.destroy();
    this._loraOps = ops;
    this.runner.hooks = ops ? ops.hooks : new Map();
    const key = pairs.map(([e, sc]) => `${e.handle}:${sc}`).join(',');
    const changed = key !== (this._loraKey || '');
    this._loraKey = key;
    this._loraPairs = pairs.slice();
    if (changed) {
      this.truncate(0);
      this._headValid = false;
      this._logitsHost = null;
    }
    return changed;
  }

  _checkIds(ids) {
    if (!ids.length) throw new RealmError('nothing to evaluate: zero tokens');
    if (this.nPast + ids.length > this.nCtx) {
      throw new ContextOverflowError(`context full: ${this.nPast} tokens in the session plus ${ids.length} new ones exceed its context of ${this.nCtx}`);
    }
    for (const t of ids) if (!(t >= 0 && t < this.nVocab)) throw new RealmError(`token id ${t} is out of range (vocabulary of ${this.nVocab})`);
  }

  // The core's cos/sin into each of the plan's RoPE tables ("ropes": a buffer per kind of layer).
  _fillRope(upto) {
    const c = this.core;
    const ropes = this.plan.ropes || [{ buffer: 'rope', swa: 0 }];
    while (this._ropeFilled < upto) {
      const p0 = this._ropeFilled;
      const n = Math.min(ROPE_CHUNK, this.nCtx - p0);
      for (const r of ropes) {
        c.call('realm_gpu_rope_table_layer', this.model.handle, Number(r.swa), p0, n, this._freqs, this._ropeTmp);
        const data = c.f32(this._ropeTmp, n * this.ropePairs * 2).slice();
        this.dev.device.queue.writeBuffer(this._bufs[r.buffer], p0 * this.ropePairs * 8, data);
      }
      this._ropeFilled = p0 + n;
    }
  }

  _staging(nbytes) {
    if (!this._readback || this._readback.size < nbytes) {
      if (this._readback) this._readback.destroy();
      this._readback = this.dev.device.createBuffer({ label: 'readback', size: Math.max(256, (nbytes + 255) & ~255), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
    return this._readback;
  }

  _writeStep(which, words) { this.dev.device.queue.writeBuffer(this._step[which], 0, new Uint32Array(words)); }

  // One submission: body for `body` ids at n_past; head = [R, n_past, t0, k]; the sampling
  // program; a copy of read = [buffer, nbytes] back to the host (its bytes returned).
  async _submit({ body = null, head = null, k = null, sampleProg = null, read = null } = {}) {
    this._check();
    const dev = this.dev;
    if (dev.lost) throw new RealmError('the WebGPU device was lost');
    const q = dev.device.queue;
    if (body) {
      this._fillRope(this.nPast + body.length);
      q.writeBuffer(this._bufs.ids, 0, new Uint32Array(body));
      this._writeStep(STEP_BODY, [body.length, this.nPast, 0, 0]);
    }
    if (head || k != null) {
      let h = head || this._head;
      if (k != null) h = [h[0], h[1], h[2], k];
      this._head = h.slice();
      this._writeStep(STEP_HEAD, this._head);
      if (head) this._writeStep(STEP_LORA_HEAD, [head[0], 0, 0, 0]);
    }
    const enc = dev.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    if (body) this.runner.record(pass, 'body', body.length);
    if (head) this.runner.record(pass, 'head', head[0]);
    if (sampleProg) this.runner.record(pass, sampleProg, this._head[0]);
    pass.end();
    let st = null;
    let nb = 0;
    if (read) {
      nb = (read[1] + 3) & ~3;
      st = this._staging(nb);
      enc.copyBufferToBuffer(read[0], 0, st, 0, nb);
    }
    q.submit([enc.finish()]);
    if (!read) return null;
    await st.mapAsync(GPUMapMode.READ, 0, nb);
    try {
      return new Uint8Array(st.getMappedRange(0, nb)).slice(0, read[1]);
    } finally {
      st.unmap();
    }
  }

  async _forward(ids, allLogits) {
    this._logitsHost = null;
    this._headValid = false;
    const rows = [];
    const V = this.nVocab;
    for (let i = 0; i < ids.length; i += this.B) {
      const batch = ids.slice(i, i + this.B);
      const T = batch.length;
      const last = i + T === ids.length;
      const p0 = this.nPast;
      if (allLogits) {
        let done = 0;
        while (done < T) {
          const R = Math.min(T - done, this.maxLogitsRows);
          const got = await this._submit({ body: done === 0 ? batch : null, head: [R, p0, done, 0], read: [this._bufs.logits, R * V * 4] });
          if (done === 0) this._tokens.push(...batch);
          rows.push(new Float32Array(got.buffer, 0, R * V));
          done += R;
        }
      } else {
        await this._submit({ body: batch, head: last ? [1, p0, T - 1, 0] : null });
        this._tokens.push(...batch);
      }
    }
    if (allLogits) {
      const all = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
      let o = 0;
      for (const r of rows) { all.set(r, o); o += r.length; }
      this._logitsHost = all;
    }
    this._headValid = true;
  }

  async eval(ids, allLogits = false) {
    this._check();
    ids = Array.from(ids, Number);
    this._checkIds(ids);
    await this._forward(ids, allLogits);
  }

  /** A copy of the last eval's logits: Float32Array of rows * n_vocab. */
  async logits() {
    this._check();
    if (!this._logitsHost) {
      if (!this._headValid) throw new RealmError('no logits: evaluate tokens first');
      const R = this._head[0];
      const got = await this._submit({ read: [this._bufs.logits, R * this.nVocab * 4] });
      this._logitsHost = new Float32Array(got.buffer, 0, R * this.nVocab);
    }
    return this._logitsHost.slice();
  }

  setSampler(settings) {
    this._check();
    this.core.write(this._sp, packSampler({ ...SAMPLER_DEFAULTS, ...settings }));
    this.core.call('realm_sampler_set', this._sampler, this._sp);
  }

  /**
   * As Session.setGrammar: every later sample follows the GBNF grammar, from its start; null
   * removes it. The core masks the whole logits row (read back while a grammar is set) and
   * advances the grammar (realm_sampler_sample_grammar), as the wgpu-py host does.
   */
  setGrammar(text, root = 'root') {
    this._check();
    const c = this.core;
    const st = text == null ? 0 : withGrammar(c, this.model.handle, text, root, (g) => {
      const s = c.call('realm_grammar_state_new', this.model.handle, g);   // (keeps its own copy of g)
      if (!s) throw c.error();
      return s;
    });
    c.call('realm_grammar_state_free', this._gstate);
    this._gstate = st;
  }

  /** As Session.setLogprobs: the core's sampler records them (from the whole logits row, read back). */
  setLogprobs(n) {
    this._check();
    if (!this.core.call('realm_sampler_set_logprobs', this._sampler, n == null ? -1 : n)) throw this.core.error();
  }

  /** As Session.logprobs: the last sample's [[id, logprob], ...], the sampled token first. */
  logprobs() {
    this._check();
    return readLogprobs(this, 'realm_sampler_logprobs', this._sampler);
  }

  // 0 (the whole row) while a grammar masks it; else what the sampler asks for
  _need(nHist) { return this._gstate ? 0 : this.core.call('realm_sampler_need', this._sampler, this.nVocab, nHist); }

  _sampleCandidates(words, n) {
    const c = this.core;
    c.write(this._cand, new Uint8Array(words.buffer, words.byteOffset, 8 * n));
    const t = c.call('realm_sampler_sample_top', this._sampler, this._cand, n);
    if (t < 0) throw c.error();
    return t;
  }

  _sampleFull(row) {
    const c = this.core;
    const n = this._tokens.length;
    const lp = c.alloc(row.byteLength);
    let t;
    try {
      c.write(lp, new Uint8Array(row.buffer, row.byteOffset, row.byteLength));
      if (n > this._histCap) {
        c.free(this._hist);
        this._hist = 0;
        this._histCap = Math.max(n, 2 * this._histCap, 64);
        this._hist = c.alloc(4 * this._histCap);
      }
      if (n) c.writeI32(this._hist, this._tokens);
      t = this._gstate
        ? c.call('realm_sampler_sample_grammar', this._sampler, this._gstate, lp, this.nVocab, this._hist || 0, n)
        : c.call('realm_sampler_sample', this._sampler, lp, this.nVocab, this._hist || 0, n);
    } finally {
      c.free(lp);
    }
    if (t < 0) throw c.error();
    return t;
  }

  async _sampleAfter(body) {
    const V = this.nVocab;
    const head = body ? [1, this.nPast, 0, 0] : null;
    const need = this._need(this._tokens.length + (body ? body.length : 0));
    if (need === 0) { // the whole row: penalties, or no top-k
      const got = await this._submit({ body, head, read: [this._bufs.logits, (body ? 1 : this._head[0]) * V * 4] });
      if (body) this._tokens.push(...body);
      const rows = new Float32Array(got.buffer, 0, got.byteLength / 4);
      this._logitsHost = rows;
      this._headValid = true;
      return this._sampleFull(rows.slice(rows.length - V));
    }
    const [prog, nwords] = need === 1 ? ['argmax', 2] : ['topk', 2 + 2 * need];
    const got = await this._submit({ body, head, k: need > 1 ? need : null, sampleProg: prog, read: [this._bufs.sample, 4 * nwords] });
    if (body) {
      this._tokens.push(...body);
      this._logitsHost = null;
      this._headValid = true;
    }
    const w = new Uint32Array(got.buffer, 0, nwords);
    if (need === 1) return this._sampleCandidates(w.subarray(0, 2), 1);
    const n = w[0];
    return this._sampleCandidates(w.subarray(2, 2 + 2 * n), n);
  }

  async sample() {
    this._check();
    if (!this._headValid) throw new RealmError('nothing to sample: evaluate tokens first');
    if (this._logitsHost && this._need(this._tokens.length) === 0) return this._sampleFull(this._logitsHost.slice(this._logitsHost.length - this.nVocab));
    return this._sampleAfter(null);
  }

  /** Evaluate one token and sample the next: one submission, a few bytes back. */
  async step(token) {
    this._check();
    token = Number(token);
    this._checkIds([token]);
    this._logitsHost = null;
    return this._sampleAfter([token]);
  }
}
