// gpu-test.js: proves the WGSL kernels (wgsl/, the same files the native host runs)
// on the browser's WebGPU. Driven by tests/test_gpu_browser.py through Playwright:
//
//   await window.gpuTest.ready                  -> adapter info, features, limits
//   await window.gpuTest.run(job)               -> one or more dispatches on fresh buffers
//   await window.gpuTest.generate(opts)         -> greedy tokens of a whole model on WebGPU
//
// run(job): job = { buffers: [{ data: base64 } | { size: bytes }],
//                   dispatches: [{ file, defines, constants, params: [u32], step: [4 x u32],
//                                  bind: [buffer index, ...], grid: [x, y, z] }],
//                   read: [buffer index, ...] }  -> { outputs: [base64, ...] }
// Binding 0 of every dispatch is its params (uniform), 1 the step uniform, 2.. the
// listed buffers, as in every kernel of wgsl/ (docs/GPU.md). The WGSL comes from
// /wgsl/ through the JS SDK's preprocessor; the whole-model run is the JS SDK's
// WebGPU backend executing the plan of realm.wasm instantiated in this page.
import { getGpuDevice, preprocess, setWgslBase } from '/js-sdk/src/webgpu.js';

setWgslBase('/wgsl/');

const b64 = {
  decode(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  },
  encode(bytes) {
    let s = '';
    const CH = 0x8000;
    for (let i = 0; i < bytes.length; i += CH) s += String.fromCharCode.apply(null, bytes.subarray(i, i + CH));
    return btoa(s);
  },
};

const pipelines = new Map();

async function pipeline(dev, d) {
  const defines = [...(d.defines || [])].sort();
  if (defines.includes('SUBGROUPS')) defines.push('SUBGROUPS_ENABLE'); // Chromium wants `enable subgroups;`
  const consts = d.constants || {};
  const key = `${d.file}|${defines}|${JSON.stringify(Object.entries(consts).sort())}`;
  if (pipelines.has(key)) return pipelines.get(key);
  const code = await preprocess(d.file, new Set(defines));
  const mod = dev.device.createShaderModule({ label: d.file, code });
  const info = await mod.getCompilationInfo();
  const errs = info.messages.filter((m) => m.type === 'error');
  if (errs.length) throw new Error(`${d.file} [${defines}]: ` + errs.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; '));
  dev.device.pushErrorScope('validation');
  const pipe = await dev.device.createComputePipelineAsync({ layout: 'auto', compute: { module: mod, entryPoint: d.entry || 'main', constants: consts } });
  const err = await dev.device.popErrorScope();
  if (err) throw new Error(`${d.file}: ${err.message}`);
  pipelines.set(key, pipe);
  return pipe;
}

function uniform(dev, words) {
  const n = Math.max(4, Math.ceil(words.length / 4) * 4);
  const a = new Uint32Array(Math.max(n, 8)); // >= 32 bytes: some kernels' params are 8 words
  a.set(words);
  const buf = dev.device.createBuffer({ size: a.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  dev.device.queue.writeBuffer(buf, 0, a);
  return buf;
}

async function run(job) {
  const dev = await getGpuDevice();
  const U = GPUBufferUsage;
  const bufs = job.buffers.map((b) => {
    const data = b.data != null ? b64.decode(b.data) : null;
    const size = Math.max(16, Math.ceil((data ? data.length + 4 : b.size) / 16) * 16);
    const buf = dev.device.createBuffer({ size, usage: U.STORAGE | U.COPY_DST | U.COPY_SRC });
    if (data && data.length) {
      const padded = new Uint8Array(Math.ceil(data.length / 4) * 4);
      padded.set(data);
      dev.device.queue.writeBuffer(buf, 0, padded);
    }
    return buf;
  });
  const enc = dev.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const d of job.dispatches) {
    const pipe = await pipeline(dev, d);
    const entries = [uniform(dev, d.params || []), uniform(dev, d.step || [1, 0, 0, 0]), ...d.bind.map((i) => bufs[i])]
      .map((buffer, binding) => ({ binding, resource: { buffer } }));
    pass.setPipeline(pipe);
    pass.setBindGroup(0, dev.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries }));
    pass.dispatchWorkgroups(...d.grid);
  }
  pass.end();
  const reads = (job.read || []).map((i) => {
    const st = dev.device.createBuffer({ size: bufs[i].size, usage: U.MAP_READ | U.COPY_DST });
    enc.copyBufferToBuffer(bufs[i], 0, st, 0, bufs[i].size);
    return st;
  });
  dev.device.queue.submit([enc.finish()]);
  const outputs = [];
  for (const st of reads) {
    await st.mapAsync(GPUMapMode.READ);
    outputs.push(b64.encode(new Uint8Array(st.getMappedRange().slice(0))));
    st.unmap();
    st.destroy();
  }
  for (const b of bufs) b.destroy();
  return { outputs };
}

async function describe() {
  const dev = await getGpuDevice();
  const limits = {};
  for (const k in dev.limits) limits[k] = dev.limits[k];
  return {
    describe: dev.describe(), software: dev.isSoftware, info: { ...dev.info, isFallbackAdapter: dev.info.isFallbackAdapter },
    features: [...dev.features].sort(), limits,
    wgslLanguageFeatures: navigator.gpu.wgslLanguageFeatures ? [...navigator.gpu.wgslLanguageFeatures].sort() : [],
  };
}

// The whole model on WebGPU through the JS SDK: greedy tokens after the prompt ids.
async function generate({ url, promptIds, nGen, nCtx = 256 }) {
  const { Realm } = await import('/js-sdk/src/index.js');
  const r = await Realm.load(url, { nCtx, cache: false, device: 'webgpu' });
  const t0 = performance.now();
  const tokens = [];
  try {
    for await (const t of r.generateTokens(promptIds, { max_tokens: nGen, temperature: 0 })) tokens.push(t);
  } finally {
    if (r.close) await r.close();
  }
  return { device: r.device, note: r.deviceNote, tokens, seconds: (performance.now() - t0) / 1000 };
}

// A model with LoRA adapters on WebGPU through the JS SDK: the logits of every prompt id,
// then of each of `steps` single-token evals (decode), as base64 f32 rows.
async function loraLogits({ url, lora, promptIds, steps = [], nCtx = 64 }) {
  const { Realm } = await import('/js-sdk/src/index.js');
  const r = await Realm.load(url, { nCtx, cache: false, device: 'webgpu', lora });
  try {
    const s = r.session;
    await s.eval(promptIds, true);
    const rows = [await s.logits()];
    for (const t of steps) {
      await s.eval([t]);
      const l = await s.logits();
      rows.push(l.subarray(l.length - s.nVocab));
    }
    const n = rows.reduce((m, x) => m + x.length, 0);
    const all = new Float32Array(n);
    let at = 0;
    for (const x of rows) { all.set(x, at); at += x.length; }
    let bin = '';
    const u8 = new Uint8Array(all.buffer);
    for (let i = 0; i < u8.length; i += 0x8000) bin += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return { device: r.device, note: r.deviceNote, lora: r.lora, logits: btoa(bin), n };
  } finally {
    if (r.close) await r.close();
  }
}

// A grammar-constrained chat completion with logprobs on WebGPU through the JS SDK
// (chat.completions.create: the core masks and draws from the logits row read back).
async function constrained({ url, messages, grammar, maxTokens, topLogprobs, nCtx = 256 }) {
  const { Realm } = await import('/js-sdk/src/index.js');
  const r = await Realm.load(url, { nCtx, cache: false, device: 'webgpu' });
  try {
    const c = await r.chat.completions.create({ messages, grammar, max_tokens: maxTokens, temperature: 0,
      logprobs: true, top_logprobs: topLogprobs });
    const ch = c.choices[0];
    return { device: r.device, note: r.deviceNote, text: ch.message.content, finish: ch.finish_reason,
      logprobs: ch.logprobs.content.map((x) => [x.token, x.logprob, x.top_logprobs.map((t) => t.logprob)]) };
  } finally {
    if (r.close) await r.close();
  }
}

window.gpuTest = { ready: describe(), run, generate, describe, loraLogits, constrained };
