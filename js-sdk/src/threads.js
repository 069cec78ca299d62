// wasm threads for the core: realm-mt.wasm instances on Workers (browser) or
// worker_threads (Node), all over one shared Memory64. The core decides how
// work is split (core/threads.c); this file only starts, sizes and stops the
// workers. Protocol with the core (docs/ARCHITECTURE.md, "Threads"):
//   worker i (1..n-1): instantiate the same module with the same memory, set its
//   __stack_pointer to the top of a stack the main instance allocated, call
//   realm_thread_run(i) (returns only after realm_threads_stop); the main
//   instance waits until realm_threads_live() counts every worker, then calls
//   realm_threads_use(n - 1).
import { RealmError } from './errors.js';
import { isNode } from './env.js';

const WORKER_STACK = 1 << 20; // a worker runs kernels and attention: a few KiB deep
const MAX_PAGES = 262144;     // V8's Memory64 limit (16 GiB), as realm-mt.wasm declares

/** Threads to use when the caller does not say: the CPUs, at most 8 (1 without shared memory). */
export function defaultThreads() {
  if (unavailable()) return 1;
  let n = 1;
  if (isNode) n = globalThis.process?.env?.REALM_THREADS ? Number(process.env.REALM_THREADS) : nodeCpus();
  else n = globalThis.navigator?.hardwareConcurrency || 1;
  return Math.max(1, Math.min(8, Math.floor(n) || 1));
}

// (top-level await: a then() here left the first load in a process at 1 thread)
let cpus = 0;
function nodeCpus() { return cpus || 1; }
if (isNode) {
  const os = await import('node:os');
  cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
}

/** Why this JS realm cannot run wasm threads, or null when it can. */
export function unavailable() {
  if (typeof SharedArrayBuffer === 'undefined') {
    return 'no SharedArrayBuffer here (serve the page with COOP: same-origin and COEP: require-corp for threads)';
  }
  if (!isNode && globalThis.crossOriginIsolated === false) {
    return 'the page is not cross-origin isolated (COOP/COEP headers), so wasm threads are unavailable';
  }
  if (!isNode && typeof Worker === 'undefined') return 'this JS realm cannot start Workers';
  return null;
}

/** The shared memory realm-mt.wasm imports: minPages (the import's minimum) to V8's maximum. */
export function sharedMemory(minPages) {
  const initial = BigInt(minPages);
  try {
    return new WebAssembly.Memory({ initial, maximum: BigInt(MAX_PAGES), shared: true, address: 'i64' });
  } catch (e) {
    // engines of the 2024 Memory64 draft spell it `index` and take Numbers
    return new WebAssembly.Memory({ initial: Number(initial), maximum: MAX_PAGES, shared: true, index: 'i64' });
  }
}

function spawn() {
  const url = new URL('./thread-worker.js', import.meta.url);
  if (isNode) {
    return import('node:worker_threads').then(({ Worker }) => {
      const w = new Worker(url);
      w.unref(); // an idle worker must not keep Node running when the user forgets to unload
      return {
        post: (m) => w.postMessage(m),
        on: (f) => { w.on('message', f); w.on('error', (e) => f({ t: 'error', message: e.message })); },
        terminate: () => w.terminate(),
      };
    });
  }
  const w = new Worker(url, { type: 'module', name: 'realm-thread' });
  return Promise.resolve({
    post: (m) => w.postMessage(m),
    on: (f) => { w.onmessage = (ev) => f(ev.data); w.onerror = (ev) => f({ t: 'error', message: ev.message || 'worker error' }); },
    terminate: () => w.terminate(),
  });
}

async function startWorker(core, index) {
  const stack = core.alloc(WORKER_STACK);
  let w;
  try {
    w = await spawn();
  } catch (e) {
    core.free(stack);
    throw e;
  }
  w.stack = stack;
  const started = new Promise((resolve, reject) => {
    w.on((m) => {
      if (m && m.t === 'running') resolve();
      else if (m && m.t === 'error') reject(new RealmError(`realm.wasm worker ${index}: ${m.message}`));
    });
  });
  w.post({ t: 'run', module: core.module, memory: core.memory, stackTop: stack + WORKER_STACK, index });
  return { w, started };
}

/** Run core (realm-mt.wasm) on n threads: this one and n - 1 workers. Resolves to n. */
export async function setThreads(core, n) {
  n = Math.max(1, Math.floor(n));
  if (!core.shared) return 1;
  if (n === core.threads) return n;
  core.close(); // stop the current workers (sizes change rarely; restarting keeps this simple)
  const starting = [];
  try {
    for (let i = 1; i < n; i++) {
      const s = await startWorker(core, i);
      core.workers.push(s.w);
      starting.push(s.started);
    }
    await Promise.all(starting);
    const t0 = Date.now();
    while (core.call('realm_threads_live') < n - 1) { // 'running' is posted just before realm_thread_run
      if (Date.now() - t0 > 10000) throw new RealmError('realm.wasm workers did not start within 10 s');
      await new Promise((r) => setTimeout(r, 1));
    }
  } catch (e) {
    core.close();
    throw e;
  }
  // a browser's main thread must not block in atomic.wait; Node's and workers' may
  const mayWait = isNode || typeof window === 'undefined';
  core.call('realm_threads_use', n - 1, mayWait ? 1 : 0);
  return core.threads;
}
