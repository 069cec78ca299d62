// One worker thread of realm-mt.wasm (see threads.js): instantiate the module over
// the shared memory, take the stack the main instance allocated, and run the core's
// worker loop until realm_threads_stop. Browser module Worker or Node worker_threads.
let port = null;

async function run({ module, memory, stackTop, index }) {
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const ex = instance.exports;
  ex.__stack_pointer.value = BigInt(stackTop) & ~15n;
  port.postMessage({ t: 'running', index });
  ex.realm_thread_run(index); // blocks this thread (memory.atomic.wait) between jobs
  port.postMessage({ t: 'stopped', index });
}

function onMessage(m) {
  if (m && m.t === 'run') {
    run(m).catch((e) => port.postMessage({ t: 'error', message: String((e && e.message) || e) }));
  }
}

if (typeof process !== 'undefined' && process.versions && process.versions.node && typeof self === 'undefined') {
  const { parentPort } = await import('node:worker_threads');
  port = parentPort;
  parentPort.on('message', onMessage);
} else {
  port = self;
  self.onmessage = (ev) => onMessage(ev.data);
}
