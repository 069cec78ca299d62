// Type declarations for realm-web (hand-written; the package is plain ESM JavaScript).

export type Device = 'auto' | 'webgpu' | 'cpu';
export type CacheMode = boolean | 'auto' | 'opfs' | 'cache-api' | 'fs' | CacheBackend;
/** A URL (string or URL), a File/Blob, an ArrayBuffer or typed array, or (Node) a file path. */
export type ModelSource = string | URL | Blob | ArrayBuffer | ArrayBufferView;

export interface LoadProgress {
  /** Bytes read so far (from the network, the cache, the file or the buffer). */
  loaded: number;
  /** The file's size in bytes (undefined only while downloading a response without Content-Length). */
  total: number | undefined;
  phase?: 'download';
}

export interface LoadOptions {
  /**
   * 'webgpu': the core's GPU plan on WebGPU (falls back to the CPU, saying why in
   * Realm.deviceNote, where there is no WebGPU); 'auto' (default): WebGPU on a hardware
   * adapter, else the CPU; 'cpu': the wasm SIMD core.
   */
  device?: Device;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Context size of this Realm's session (default min(4096, the model's training context)). */
  nCtx?: number;
  /**
   * CPU threads for the model (wasm threads, realm-mt.wasm). Default: the CPUs, at most 8.
   * Needs SharedArrayBuffer: Node, or a page served with COOP/COEP; elsewhere the model
   * runs on one thread and Realm.threadsNote says why. Per model: every Realm of it shares them.
   */
  threads?: number;
  /**
   * The CPU kernels: 'auto' (default: the relaxed-SIMD build where the engine has relaxed
   * SIMD, else SIMD128), 'relaxed' (error without it) or 'simd128'. Same results either way.
   */
  simd?: 'auto' | 'relaxed' | 'simd128';
  /**
   * Which build of the core: 'auto' (default: Memory64 where the engine has it, else the wasm32
   * build, models up to 4 GiB, one thread), 'wasm64' (error without Memory64) or 'wasm32'.
   */
  wasm?: 'auto' | 'wasm64' | 'wasm32';
  /** LoRA adapters (llama.cpp GGUF) with their scales, applied to this session (CPU core). */
  lora?: LoraSpec;
  /** KV cache types (llama.cpp's -ctk / -ctv): 'f16' (default) or 'q8_0' (about half the memory; CPU core only). */
  cacheTypeK?: KvCacheType;
  cacheTypeV?: KvCacheType;
  n_ctx?: number;
  /** Keep models fetched from URLs (default true: OPFS in browsers, files in Node). */
  cache?: CacheMode;
  /** Run in a worker: true (one shared worker) or a Worker you created from 'realm-web/worker'. */
  worker?: boolean | Worker | object;
  /** Worker mode: transfer (detach) an ArrayBuffer source instead of copying it. */
  transfer?: boolean;
  /** The `model` field of chat completions (default: the source's file name). */
  id?: string;
  /** Overrides the store key (sources with the same identity share one copy of the weights). */
  identity?: string;
  /** Extra fetch() options for URL sources (headers, credentials, ...). */
  fetchOptions?: RequestInit;
}

/**
 * Options of generate / stream / generateTokens. Sampling defaults are llama.cpp's
 * (LLAMA_CPP_SAMPLING), as the Python Realm's.
 */
export interface GenerateOptions {
  /** Tokens to generate (default 128; negative: until the context is full). */
  max_tokens?: number;
  maxTokens?: number;
  /** <= 0: greedy. Default 0.8. */
  temperature?: number;
  /** Default 40; 0: off. */
  top_k?: number; topK?: number;
  /** Default 0.95. */
  top_p?: number; topP?: number;
  /** Default 0.05. */
  min_p?: number; minP?: number;
  /** Default 1.0 (off). */
  repeat_penalty?: number; repeatPenalty?: number;
  /** Tokens the penalties look back over (default 64). */
  repeat_last_n?: number; repeatLastN?: number;
  /** Default 0. */
  frequency_penalty?: number; frequencyPenalty?: number;
  /** Default 0. */
  presence_penalty?: number; presencePenalty?: number;
  /** u64 seed of the sampler (default: random). */
  seed?: number | bigint;
  /** Stop strings: generation ends before the first one (not included). */
  stop?: string | string[];
  /** Stops the call promptly (within one token / one 64-token prompt batch). */
  signal?: AbortSignal;
  /** Let the tokenizer add BOS/EOS to a string prompt as the vocabulary says (default true). */
  add_special?: boolean; addSpecial?: boolean;
  ignore_eos?: boolean; ignoreEos?: boolean;
  /** Fill this object with the call's statistics (also available as realm.lastStats). */
  stats?: GenerationStats;
  /**
   * Record log-probabilities with every token (CPU only; WebGPU refuses them): n (0..20; true = 0)
   * gives streamBatch's token events `logprobs`: the sampled token's, then the n most likely.
   * Default off.
   */
  logprobs?: number | boolean | null;
  /** GBNF grammar (llama.cpp's syntax) every sampled token must follow (CPU only). */
  grammar?: string | null;
}

export interface GenerationStats {
  prompt_tokens: number;
  /** Prompt tokens reused from the session's cache. */
  cached_tokens: number;
  generated_tokens: number;
  prompt_seconds: number;
  generate_seconds: number;
  /** 'stop' (end of generation or a stop string) or 'length'. */
  finish_reason: 'stop' | 'length' | '';
  tokens: number[];
  readonly prompt_tps?: number;
  readonly generate_tps?: number;
}

/** One prompt of a batch (Realm.streamBatch / generateBatch): a prompt (or a chat) and its own options. */
export type BatchPrompt = string | number[] | (GenerateOptions & ({ prompt: string | number[] } | { messages: ChatMessage[] }));

/** A sample's log-probabilities (natural log): [id, logprob] of the sampled token, then of the most likely ones, most likely first. */
export type TokenLogprobs = Array<[number, number]>;
/**
 * streamBatch: a prompt produced `text` ('' while a stop string may still match; token: the id, or null).
 * logprobs: with the prompt's `logprobs` option, that token's sample's (TokenLogprobs).
 */
export interface BatchDelta { index: number; token: number | null; text: string; logprobs?: TokenLogprobs; done?: undefined }
/** streamBatch: a prompt ended. error: null, or what ended it alone (its own signal's reason, a bad prompt, a core error about its session). */
export interface BatchEnd { index: number; done: true; finish_reason: 'stop' | 'length' | ''; stats: GenerationStats | null; error: unknown }
export type BatchEvent = BatchDelta | BatchEnd;

export interface ModelInfo {
  n_vocab: number; n_ctx_train: number; n_embd: number; n_layer: number; n_head: number; n_head_kv: number;
  head_dim: number; n_ff: number; bos: number; eos: number; add_bos: boolean; add_eos: boolean;
  rope_type: number; rope_dim: number; rope_base: number; rms_eps: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string | null;
  [k: string]: unknown;
}

/**
 * An OpenAI chat request. Sampling defaults are OpenAI's (OPENAI_SAMPLING), as `realm serve`'s:
 * the same seeded request samples the same in both. fromOpenAI() is the mapping.
 */
export interface ChatCompletionRequest {
  messages: ChatMessage[];
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  /** Default: until the model stops or the context is full. */
  max_tokens?: number | null;
  /** Wins over max_tokens. */
  max_completion_tokens?: number | null;
  /** Default 1.0; 0: greedy. */
  temperature?: number | null;
  /** Default 1.0 (off). */
  top_p?: number | null;
  /** llama.cpp's extension. Default 0 (off). */
  top_k?: number | null;
  /** llama.cpp's extension. Default 0 (off). */
  min_p?: number | null;
  stop?: string | string[] | null;
  /** Default: random. */
  seed?: number | null;
  /** Default 0. */
  frequency_penalty?: number | null;
  /** Default 0. */
  presence_penalty?: number | null;
  /** llama.cpp's extension. Default 1.0 (off). */
  repeat_penalty?: number | null;
  /** llama.cpp's extension: tokens the penalties look back over (default 64). */
  repeat_last_n?: number | null;
  /** Independent choices, 1..16 (default 1): choice 0 is n = 1's, choice i samples from seed + i; run as one batch. */
  n?: number | null;
  /** Each choice's logprobs.content: every token's log-probability (and top_logprobs' most likely). Default false. */
  logprobs?: boolean | null;
  /** 0..20 most likely tokens per position besides the sampled one; needs logprobs: true. */
  top_logprobs?: number | null;
  /** {type: 'json_object'}: the reply is constrained to a JSON object (the core's JSON grammar); {type: 'json_schema'}: to the schema (the core converts it to a grammar). */
  response_format?: { type: 'text' | 'json_object' } | { type: 'json_schema'; json_schema: { name?: string; schema?: object | boolean; strict?: boolean | null } } | null;
  /** llama-server's field: GBNF text every sampled token must follow. */
  grammar?: string | null;
  /** Functions the model may call (OpenAI's): the answer is constrained to calls whose arguments follow each one's parameters schema. */
  tools?: ChatCompletionTool[] | null;
  /** Default 'auto' (a reply or calls); 'required': calls only; a named function: that one; 'none': no calls. */
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | null;
  /** false: at most one call. Default true. */
  parallel_tool_calls?: boolean | null;
  signal?: AbortSignal;
  /** Override the model's template (tokenizer.chat_template). */
  chat_template?: string;
  chat_template_kwargs?: Record<string, unknown>;
}

export interface ChatCompletionTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: object };
}

/** A tool call in an assistant message (arguments: JSON text). */
export interface ChatCompletionMessageToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A streamed piece of a tool call: id, type and name first, then its arguments. */
export interface ChatCompletionChunkToolCall {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
}

/** One token's log-probability as OpenAI writes it (token: its bytes as UTF-8, invalid ones replaced). */
export interface TopLogprob { token: string; logprob: number; bytes: number[] }
export interface ChatCompletionTokenLogprob extends TopLogprob {
  /** The most likely tokens at this position (top_logprobs of them), most likely first. */
  top_logprobs: TopLogprob[];
}
/** A choice's logprobs (logprobs: true): one entry per generated token (in a chunk: that chunk's token). */
export interface ChatCompletionLogprobs { content: ChatCompletionTokenLogprob[]; refusal: null }

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{ index: number; message: { role: 'assistant'; content: string | null; refusal: null; tool_calls?: ChatCompletionMessageToolCall[] }; logprobs: ChatCompletionLogprobs | null; finish_reason: 'stop' | 'length' | 'tool_calls' }>;
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** One choice per chunk (index: which); with n > 1 the choices' chunks interleave. */
  choices: Array<{ index: number; delta: { role?: 'assistant'; content?: string; tool_calls?: ChatCompletionChunkToolCall[] }; logprobs: ChatCompletionLogprobs | null; finish_reason: 'stop' | 'length' | 'tool_calls' | null }>;
  usage?: CompletionUsage;
}

/** A stream of chunks (as the OpenAI SDK's Stream). */
export interface ChatCompletionStream extends AsyncIterable<ChatCompletionChunk> {
  controller: { abort(): void };
}

export interface ChatCompletions {
  create(req: ChatCompletionRequest & { stream: true }): Promise<ChatCompletionStream> & AsyncIterable<ChatCompletionChunk>;
  create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(req: ChatCompletionRequest): Promise<ChatCompletion | ChatCompletionStream>;
}

export interface TokenizeOptions { addSpecial?: boolean; parseSpecial?: boolean; add_special?: boolean; parse_special?: boolean }

export interface CacheEntry { url: string; size?: number; storedAt?: number; etag?: string | null; lastModified?: string | null }

export interface CacheBackend {
  kind?: string;
  list(): Promise<CacheEntry[]>;
  delete(url: string): Promise<boolean>;
  clear(): Promise<void>;
  open(url: string): Promise<unknown | null>;
  writer(url: string, size: number | undefined, meta?: object): Promise<{ write(c: Uint8Array): Promise<void>; commit(): Promise<void>; abort(): Promise<void> }>;
}

/** Realm.cache: models kept from URLs. `mode` picks a backend (default: the automatic one). */
export interface ModelCache {
  list(mode?: CacheMode): Promise<CacheEntry[]>;
  has(url: string, mode?: CacheMode): Promise<boolean>;
  delete(url: string, mode?: CacheMode): Promise<boolean>;
  clear(mode?: CacheMode): Promise<void>;
  /** 'opfs', 'cache-api', 'fs' or null. */
  backend(): Promise<string | null>;
}

export interface LoadedModel { name: string; key: string; refs: number; memoryBytes: number; /** WebGPU models: bytes of weights in GPU buffers. */ gpuBytes: number }

/** What Realm and RealmWorker have in common (await works on both). */
export interface RealmLike {
  readonly info: ModelInfo;
  readonly nCtx: number;
  readonly device: 'cpu' | 'webgpu';
  /** Why the device differs from the one asked for (e.g. WebGPU not in this build), or null. */
  readonly deviceNote: string | null;
  /** CPU threads running this model (1 on WebGPU or without wasm threads). */
  readonly threads: number;
  /** Why the model runs on one thread although more were asked for, else null. */
  readonly threadsNote: string | null;
  /** The CPU kernels' instruction set: 'relaxed' (relaxed SIMD) or 'simd128'. */
  readonly simd: 'relaxed' | 'simd128';
  /** Which build of the core runs: Memory64 ('wasm64') or 'wasm32', and its file. */
  readonly wasm: { arch: 'wasm64' | 'wasm32'; file: string | null };
  readonly id: string;
  readonly source: string;
  /** The model came from the URL cache, not the network. */
  readonly fromCache: boolean;
  readonly closed: boolean;
  lastStats: GenerationStats | null;
  readonly chat: { completions: ChatCompletions };
  /** Apply LoRA adapters (llama.cpp GGUF) from the next generation ([] removes them; scale 0 = the base model); in worker mode they load in the worker. */
  setLora(spec: LoraSpec): Promise<void>;
  /** [[name, scale], ...] of the adapters this session applies. */
  readonly lora: Array<[string, number]>;
  generate(prompt: string | number[], opts?: GenerateOptions): Promise<string>;
  stream(prompt: string | number[], opts?: GenerateOptions): AsyncGenerator<string, void, undefined>;
  generateTokens(prompt: string | number[], opts?: GenerateOptions): AsyncGenerator<number, void, undefined>;
  /**
   * Several prompts at once, one session each, advanced together (on the CPU: one forward
   * pass per step for all; each prompt gets the tokens it gets alone). opts: what every
   * prompt starts from, and signal (aborts all); a prompt's own signal aborts it alone.
   */
  streamBatch(prompts: BatchPrompt[], opts?: GenerateOptions): AsyncGenerator<BatchEvent, void, undefined>;
  /** streamBatch's texts; rejects (after the others ended) with the first prompt's error (error.index, error.results). */
  generateBatch(prompts: BatchPrompt[], opts?: GenerateOptions): Promise<string[]>;
  /** Stats of every prompt of the last batch. */
  lastBatchStats: GenerationStats[];
  tokenize(text: string, opts?: TokenizeOptions | boolean): number[] | Promise<number[]>;
  detokenize(ids: ArrayLike<number>, opts?: { special?: boolean }): string | Promise<string>;
  metadata(): Record<string, unknown> | Promise<Record<string, unknown>>;
  applyChatTemplate(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean; chatTemplate?: string; extra?: object }): Promise<string>;
  chatIds(messages: ChatMessage[], opts?: object): Promise<number[]>;
  /** Free this session; the weights go when the last Realm using them unloads. */
  unload(): Promise<void>;
}

/** One session (KV cache) on a model whose weights are shared by every Realm of the same source. */
/** [[source, scale], ...], {path|source, scale} objects, or bare sources (scale 1). */
export type LoraSpec = Array<[ModelSource, number] | { path?: ModelSource; source?: ModelSource; scale?: number } | ModelSource>;

export class Realm implements RealmLike {
  /** Load a model (URL, File/Blob, ArrayBuffer/Uint8Array, or a path in Node). With {worker: true}: a RealmWorker. */
  static load(source: ModelSource, options: LoadOptions & { worker: true | Worker | object }): Promise<RealmWorker>;
  static load(source: ModelSource, options?: LoadOptions): Promise<Realm>;
  static readonly cache: ModelCache;
  static loadedModels(): LoadedModel[];
  /** Bytes of wasm memory held by every model loaded in this JS realm (page, worker, process). */
  static memoryBytes(): number;

  readonly info: ModelInfo;
  readonly nCtx: number;
  readonly device: 'cpu' | 'webgpu';
  readonly deviceNote: string | null;
  /** CPU threads running this model (1 on WebGPU or without wasm threads). */
  readonly threads: number;
  /** Why the model runs on one thread although more were asked for, else null. */
  readonly threadsNote: string | null;
  /** The CPU kernels' instruction set: 'relaxed' (relaxed SIMD) or 'simd128'. */
  readonly simd: 'relaxed' | 'simd128';
  /** Which build of the core runs: Memory64 ('wasm64') or 'wasm32', and its file. */
  readonly wasm: { arch: 'wasm64' | 'wasm32'; file: string | null };
  readonly id: string;
  readonly source: string;
  readonly fromCache: boolean;
  readonly closed: boolean;
  lastStats: GenerationStats;
  readonly chat: { completions: ChatCompletions };
  readonly model: CoreModel;
  readonly session: Session;
  /** Apply LoRA adapters from the next generation ([] removes them; scale 0 = the base model). */
  setLora(spec: LoraSpec): Promise<void>;
  /** [[name, scale], ...] of the adapters this session applies. */
  readonly lora: Array<[string, number]>;
  generate(prompt: string | number[], opts?: GenerateOptions): Promise<string>;
  stream(prompt: string | number[], opts?: GenerateOptions): AsyncGenerator<string, void, undefined>;
  generateTokens(prompt: string | number[], opts?: GenerateOptions): AsyncGenerator<number, void, undefined>;
  /**
   * Several prompts at once, one session each, advanced together (on the CPU: one forward
   * pass per step for all; each prompt gets the tokens it gets alone). opts: what every
   * prompt starts from, and signal (aborts all); a prompt's own signal aborts it alone.
   */
  streamBatch(prompts: BatchPrompt[], opts?: GenerateOptions): AsyncGenerator<BatchEvent, void, undefined>;
  /** streamBatch's texts; rejects (after the others ended) with the first prompt's error (error.index, error.results). */
  generateBatch(prompts: BatchPrompt[], opts?: GenerateOptions): Promise<string[]>;
  /** Stats of every prompt of the last batch. */
  lastBatchStats: GenerationStats[];
  tokenize(text: string, opts?: TokenizeOptions | boolean): number[];
  detokenize(ids: ArrayLike<number>, opts?: { special?: boolean }): string;
  metadata(): Record<string, unknown>;
  applyChatTemplate(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean; chatTemplate?: string; extra?: object }): Promise<string>;
  chatIds(messages: ChatMessage[], opts?: object): Promise<number[]>;
  unload(): Promise<void>;
}

/** A Realm whose model and session live in a worker; every method returns a Promise. */
export class RealmWorker implements RealmLike {
  static load(source: ModelSource, options?: LoadOptions): Promise<RealmWorker>;
  readonly isWorker: true;
  readonly info: ModelInfo;
  readonly nCtx: number;
  readonly device: 'cpu' | 'webgpu';
  readonly deviceNote: string | null;
  /** CPU threads running this model (1 on WebGPU or without wasm threads). */
  readonly threads: number;
  /** Why the model runs on one thread although more were asked for, else null. */
  readonly threadsNote: string | null;
  /** The CPU kernels' instruction set: 'relaxed' (relaxed SIMD) or 'simd128'. */
  readonly simd: 'relaxed' | 'simd128';
  /** Which build of the core runs: Memory64 ('wasm64') or 'wasm32', and its file. */
  readonly wasm: { arch: 'wasm64' | 'wasm32'; file: string | null };
  readonly id: string;
  readonly source: string;
  readonly fromCache: boolean;
  readonly closed: boolean;
  lastStats: GenerationStats | null;
  readonly chat: { completions: ChatCompletions };
  /** Apply LoRA adapters (llama.cpp GGUF) from the next generation ([] removes them; scale 0 = the base model); in worker mode they load in the worker. */
  setLora(spec: LoraSpec): Promise<void>;
  /** [[name, scale], ...] of the adapters this session applies. */
  readonly lora: Array<[string, number]>;
  generate(prompt: string | number[], opts?: GenerateOptions): Promise<string>;
  stream(prompt: string | number[], opts?: GenerateOptions): AsyncGenerator<string, void, undefined>;
  generateTokens(prompt: string | number[], opts?: GenerateOptions): AsyncGenerator<number, void, undefined>;
  /**
   * Several prompts at once, one session each, advanced together (on the CPU: one forward
   * pass per step for all; each prompt gets the tokens it gets alone). opts: what every
   * prompt starts from, and signal (aborts all); a prompt's own signal aborts it alone.
   */
  streamBatch(prompts: BatchPrompt[], opts?: GenerateOptions): AsyncGenerator<BatchEvent, void, undefined>;
  /** streamBatch's texts; rejects (after the others ended) with the first prompt's error (error.index, error.results). */
  generateBatch(prompts: BatchPrompt[], opts?: GenerateOptions): Promise<string[]>;
  /** Stats of every prompt of the last batch. */
  lastBatchStats: GenerationStats[];
  tokenize(text: string, opts?: TokenizeOptions | boolean): Promise<number[]>;
  detokenize(ids: ArrayLike<number>, opts?: { special?: boolean }): Promise<string>;
  metadata(): Promise<Record<string, unknown>>;
  applyChatTemplate(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean; chatTemplate?: string; extra?: object }): Promise<string>;
  chatIds(messages: ChatMessage[], opts?: object): Promise<number[]>;
  unload(): Promise<void>;
  terminate(): Promise<void>;
}

/** Several models by id; the same source loaded twice shares one copy of the weights. */
export class RealmRegistry {
  constructor(defaults?: LoadOptions);
  load(id: string, source: ModelSource, options?: LoadOptions): Promise<Realm | RealmWorker>;
  get(id: string): Realm | RealmWorker | undefined;
  has(id: string): boolean;
  list(): Array<{ id: string; source: string; device: string; nCtx: number; worker: boolean }>;
  unload(id: string): Promise<boolean>;
  unloadAll(): Promise<void>;
  readonly size: number;
}

export class RealmError extends Error {
  /** A batch call (CoreModel.evalBatch / stepBatch): the session the core named, null for the whole batch. */
  sessionIndex?: number | null;
  /** A batch prompt (Realm.streamBatch / generateBatch): the prompt this error ended. */
  index?: number;
}
export class ModelFormatError extends RealmError {}
export class UnsupportedModelError extends RealmError {}
export class ContextOverflowError extends RealmError {}
/** The core's memory could not grow (a model or context too large for this engine). */
export class OutOfMemoryError extends RealmError {}
/** The realm.wasm ABI version this SDK speaks (core/abi.json). */
export const ABI_VERSION: number;
/** Sampling defaults per meaning: `openai` (chat.completions.create) and `llama_cpp` (generate, stream, chat). */
export const SAMPLING_DEFAULTS: {
  readonly openai: Readonly<Record<string, number>>;
  readonly llama_cpp: Readonly<Record<string, number>>;
};
/** ggml type ids -> name, elements per block, bytes per block, whether this core runs it. */
export const GGML_TYPES: Readonly<Record<string, { name: string; block: number; bytes: number; runs: boolean }>>;

// ---------------------------------------------------------------- lower level
/** One realm.wasm instance (src/core.js): i64 arguments as Number or BigInt, i64 results as Number. */
export class WasmCore {
  static create(): Promise<WasmCore>;
  readonly memory: WebAssembly.Memory;
  readonly exports: WebAssembly.Exports;
  has(name: string): boolean;
  call(name: string, ...args: Array<number | bigint | boolean>): number;
  lastError(): string;
  memoryBytes(): number;
  u8(ptr: number, n: number): Uint8Array;
  i32(ptr: number, n: number): Int32Array;
  f32(ptr: number, n: number): Float32Array;
  dv(ptr: number, n: number): DataView;
  read(ptr: number, n: number): Uint8Array;
  readString(ptr: number, n: number): string;
  readCString(ptr: number, limit?: number): string;
  write(ptr: number, bytes: Uint8Array): void;
  readI32(ptr: number, n: number): number[];
  writeI32(ptr: number, values: ArrayLike<number>): void;
  alloc(n: number): number;
  free(ptr: number): void;
  allocString(text: string | Uint8Array): [number, number];
}

/** One model in its own instance (src/model.js). Prefer Realm.load, which shares models. */
export class CoreModel {
  static load(source: ModelSource, opts?: { onProgress?: (p: LoadProgress) => void; signal?: AbortSignal; vocabOnly?: boolean; headerOnly?: boolean; cache?: CacheMode }): Promise<CoreModel>;
  readonly core: WasmCore;
  readonly handle: number;
  readonly info: ModelInfo;
  readonly name: string;
  readonly size: number;
  readonly fromCache: boolean;
  free(): void;
  memoryBytes(): number;
  meta(key: string): unknown;
  metadata(): Record<string, unknown>;
  tensors(): Array<{ name: string; type: number; shape: number[]; offset: number; nbytes: number }>;
  tokenize(text: string | Uint8Array, addSpecial?: boolean, parseSpecial?: boolean): number[];
  piece(token: number, special?: boolean): Uint8Array;
  /** GBNF for a JSON Schema (realm_json_schema_gbnf); rules start with prefix, the start rule is prefix + 'root'. */
  jsonSchemaGbnf(schema: object | boolean | string, prefix?: string): string;
  detokenize(ids: Iterable<number>, special?: boolean): Uint8Array;
  isEog(token: number): boolean;
  tokenText(id: number): string;
  /** Tokens one batched step may hold, all sessions together (64). */
  batchMaxTokens(): number;
  /**
   * One forward pass for several sessions of this model: sessions[i] evaluates chunks[i].
   * Logits equal each session's alone, bit for bit. On error (the core's error class)
   * error.sessionIndex names the session (null: the whole batch) and no session changed.
   */
  evalBatch(sessions: Array<Session | null>, chunks: number[][], opts?: { allLogits?: boolean | boolean[]; logits?: boolean | boolean[] }): void;
  /** evalBatch, then each session samples its next token with its own sampler (-1 where logits is false). */
  stepBatch(sessions: Array<Session | null>, tokens: Array<number | number[]>, opts?: { logits?: boolean | boolean[] }): number[];
}

/** One KV cache in a model's instance. After close() every method throws RealmError('session is closed'). */
export type KvCacheType = 'f16' | 'q8_0';

export class Session {
  constructor(model: CoreModel, nCtx: number, cacheTypes?: { k?: KvCacheType | 1 | 8; v?: KvCacheType | 1 | 8 });
  /** [K, V] as ggml type ids: 1 = F16, 8 = Q8_0. */
  readonly cacheTypes: [number, number];
  readonly nPast: number;
  tokens(): number[];
  truncate(n: number): void;
  eval(ids: number[], allLogits?: boolean): void;
  logits(): Float32Array;
  setSampler(s: Partial<typeof SAMPLER_DEFAULTS>): void;
  sample(): number;
  step(token: number): number;
  /** Record log-probabilities with every sample (also in stepBatch): null or -1 off (default), else the top n (0..20). */
  setLogprobs(n: number | null): void;
  /** The last sample's: [id, logprob] of the sampled token, then the top n, most likely first; [] when off. */
  logprobs(): TokenLogprobs;
  close(): void;
}

export interface SamplerSettings {
  temperature: number; top_k: number; top_p: number; min_p: number; repeat_penalty: number; repeat_last_n: number;
  frequency_penalty: number; presence_penalty: number;
}
/** llama.cpp's sampling defaults: generate / stream / generateTokens (0.8, top_k 40, top_p 0.95, min_p 0.05). */
export const LLAMA_CPP_SAMPLING: Readonly<SamplerSettings>;
/** OpenAI's sampling defaults: chat.completions.create, as `realm serve` (1.0, top_k 0, top_p 1, min_p 0). */
export const OPENAI_SAMPLING: Readonly<SamplerSettings>;
/** What Session.setSampler fills in for fields it is not given: LLAMA_CPP_SAMPLING and a fixed seed. */
export const SAMPLER_DEFAULTS: Readonly<SamplerSettings & { seed: number | bigint }>;
/** Generation options (every sampler field, seed, max_tokens, stop, signal) of an OpenAI request, OpenAI's defaults filled in. */
export function fromOpenAI(req: Partial<ChatCompletionRequest>): GenerateOptions & SamplerSettings;
/** Most choices (n) per request: 16, as `realm serve`. */
export const MAX_CHOICES: number;
/** Most top_logprobs: 20 (the core's MAX_LOGPROBS). */
export const MAX_TOP_LOGPROBS: number;
/**
 * Checks n, logprobs, top_logprobs and seed of an OpenAI request (a RealmError with `param` and
 * `realm serve`'s message); returns n and logprobs (null: off, else the top count).
 */
export function checkOpenAI(req: Partial<ChatCompletionRequest>): { n: number; logprobs: number | null };
/** The generation options of each of the request's n choices: choice 0 = fromOpenAI(req), choice i samples from seed + i. */
export function choiceOptions(req: Partial<ChatCompletionRequest>): Array<GenerateOptions & SamplerSettings>;

export const modelCache: ModelCache;
export const DEFAULT_CTX: number;
/** Prompt ids per core eval call (the core's batch). */
export const EVAL_BATCH: number;
export const CHATML: string;
/**
 * Where realm.wasm comes from, and realm-mt.wasm (options.threads), realm-relaxed.wasm
 * (options.relaxed), realm-mt-relaxed.wasm (options.threadsRelaxed); default: beside a
 * URL/path src; for bytes, builds not given are not used.
 */
export function setWasmSource(src: string | URL | ArrayBuffer | ArrayBufferView,
  options?: { threads?: string | URL | ArrayBuffer | ArrayBufferView; relaxed?: string | URL | ArrayBuffer | ArrayBufferView;
    threadsRelaxed?: string | URL | ArrayBuffer | ArrayBufferView }): void;
export function compileCore(options?: { threads?: boolean; relaxed?: boolean }): Promise<{ module: WebAssembly.Module; sigs: object | null; where: string; relaxed: boolean; note?: string }>;
/** Whether this JavaScript engine runs relaxed SIMD (a one-instruction probe module). */
export function relaxedSimdSupported(): boolean;
/** Whether this engine runs Memory64 modules (else the SDK runs realm32*.wasm). */
export function memory64Supported(): boolean;
/** The build Realm.load would pick for an options.wasm value. */
export function chooseWasmArch(wasm?: 'auto' | 'wasm64' | 'wasm32'): 'wasm64' | 'wasm32';
/** Where the WGSL kernels are fetched from (default: ../wgsl/ in the package, or the repository's wgsl/). */
export function setWgslBase(url: string | URL): void;
export class GPUUnavailable extends RealmError {}
/** Use this @huggingface/jinja module (when a bundler or import map provides it). */
export function setJinja(mod: { Template: new (src: string) => { render(ctx: object): string } }): void;
export function renderChat(template: string | null | undefined, messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean; bosToken?: string; eosToken?: string; extra?: object }): Promise<string>;
export function loadedModels(): LoadedModel[];
export function memoryBytes(): number;
export function normalizeOptions<T extends object>(opts?: T): T;
export class StopFilter { constructor(stops: string[]); push(text: string): string; flush(): string; hit: boolean }
/**
 * One generation as a step-wise state machine (src/generation.js; the twin of
 * realm_web/generation.py): what to evaluate next, and what each sampled token means.
 * It calls no core: a driver evaluates nextIds() on a session, reports fed(n), and
 * hands every sampled token to accept().
 */
export class Generation {
  constructor(vocab: { isEog(id: number): boolean; piece(id: number, special?: boolean): Uint8Array }, ids: ArrayLike<number>, nCtx: number,
    opts?: { max_tokens?: number | null; stop?: string | string[] | null; ignore_eos?: boolean; text?: boolean; stats?: GenerationStats });
  readonly phase: 'prefill' | 'decode' | 'done';
  readonly done: boolean;
  /** 'stop', 'length', or '' while running (or if abandoned). */
  readonly finishReason: 'stop' | 'length' | '';
  /** The token the last accept() took (null: it ended the generation unemitted). */
  readonly token: number | null;
  /** Tokens in the session's cache. */
  readonly nPast: number;
  readonly stats: GenerationStats;
  /** Positions of the session's cache (its ids) to keep: the driver truncates there. */
  reuse(cached: ArrayLike<number>): number;
  /** Up to maxChunk prompt ids, or the one token to decode; [] when done. */
  nextIds(maxChunk?: number | null): number[];
  /** The first n ids of nextIds() were evaluated; true when a token is to be sampled now. */
  fed(n: number): boolean;
  /** A sampled token: the text it adds (whole characters; held back while a stop string could still match). */
  accept(token: number): string;
  /** Stop here (settles the timing). */
  close(): void;
}
/** One unit of work of a Generation on a Session: a prompt chunk, or a decode step. Resolves to the text it adds. */
export function advance(g: Generation, session: Session | object, maxChunk?: number | null): Promise<string>;
/** One realm_batch_step for several Generations of one CPU model: per unit, the text accept() added, or null if it sampled nothing. */
export function advanceBatch(model: CoreModel, units: Array<{ g: Generation; session: Session }>, maxChunk?: number | null): Array<string | null>;
/** The generation loop over streams (one: advance(); several on a CPU model: advanceBatch()); see src/generation.js. */
export function drive(streams: Array<{ g: Generation | null; session: Session | object; signal?: AbortSignal | null; error?: unknown; logprobs?: boolean }>,
  opts?: { model?: CoreModel | null; maxChunk?: number | null; signal?: AbortSignal | null; check?: () => void }): AsyncGenerator<BatchEvent, void, undefined>;
export function asSource(src: ModelSource, opts?: object): Promise<unknown>;
