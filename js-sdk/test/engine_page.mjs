// The check every engine runs (Node, Chromium, WebKit, Firefox), as source text so that
// WebDriver and DevTools clients can evaluate it in a page that has `window.realm`
// (test/browser/index.html). Greedy, 8 tokens, CPU.
export const PROMPT = 'The capital of France is';
export const PAGE_CHECK = `async function (model, wasm, engine) {
  const g = typeof window !== 'undefined' ? window : globalThis;
  if (g.realmReady) await g.realmReady;
  const { Realm, memory64Supported } = g.realm;
  const r = await Realm.load(model, { nCtx: 128, cache: false, device: 'cpu', wasm });
  let text = '';
  try {
    for await (const piece of r.stream(${JSON.stringify(PROMPT)}, { max_tokens: 8, temperature: 0 })) text += piece;
    return { engine: engine || navigator.userAgent, memory64: memory64Supported(), wasm: r.wasm, simd: r.simd,
             text, tokens: r.lastStats.tokens };
  } finally {
    await r.unload();
  }
}`;
