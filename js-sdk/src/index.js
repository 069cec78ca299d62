// realm-web: LLaMA-family GGUF models in the browser and Node on one Memory64
// WebAssembly core (realm.wasm). See README.md and index.d.ts.
export { Realm } from './realm.js';
export { StopFilter } from './stops.js';
export { Generation, advance, advanceBatch, drive } from './generation.js';
export { normalizeOptions } from './options.js';
export { DEFAULT_CTX, EVAL_BATCH } from './abi.js';
export { SAMPLER_DEFAULTS, LLAMA_CPP_SAMPLING, OPENAI_SAMPLING, fromOpenAI, checkOpenAI, choiceOptions, MAX_CHOICES, MAX_TOP_LOGPROBS } from './sampling.js';
export { RealmRegistry } from './registry.js';
export { RealmWorker } from './worker-client.js';
export { RealmError, ModelFormatError, UnsupportedModelError, ContextOverflowError, OutOfMemoryError, WasmCore, setWasmSource, compileCore, relaxedSimdSupported, memory64Supported, chooseWasmArch } from './core.js';
export { CoreModel } from './model.js';
export { Session } from './session.js';
export { modelCache } from './cache.js';
export { setJinja, renderChat, CHATML } from './chat.js';
export { parseTools, envelopeSchema, toolFormat, toolGrammar, promptMessages, parseAnswer } from './tools.js';
export { loadedModels, memoryBytes } from './store.js';
export { asSource } from './sources.js';
export { setWgslBase, GPUUnavailable } from './webgpu.js';
export { ABI_VERSION, SAMPLING_DEFAULTS, GGML_TYPES } from './abi.js';
