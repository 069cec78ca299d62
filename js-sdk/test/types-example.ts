// Compiled by `tsc --noEmit` in types.test.mjs: the declarations in index.d.ts describe
// the API the README shows.
import { Realm, RealmRegistry, RealmWorker, ChatCompletion, ChatCompletionChunk, ContextOverflowError } from 'realm-web';

export async function example(file: Blob): Promise<string> {
  const r = await Realm.load('/models/smol.gguf', { device: 'auto', onProgress: ({ loaded, total }) => console.log(loaded, total) });
  const text: string = await r.generate('Hello', { max_tokens: 8, temperature: 0, signal: AbortSignal.timeout(1000) });
  for await (const piece of r.stream('Hi', { maxTokens: 4, stop: ['\n'] })) console.log(piece);
  const res: ChatCompletion = await r.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });
  const stream = await r.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true });
  for await (const c of stream) { const chunk: ChatCompletionChunk = c; console.log(chunk.choices[0]?.delta.content); }
  const many: ChatCompletion = await r.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], n: 3, seed: 1, logprobs: true, top_logprobs: 2 });
  for (const ch of many.choices) for (const t of ch.logprobs?.content ?? []) console.log(ch.index, t.token, t.logprob, t.bytes, t.top_logprobs.map((x) => x.logprob));
  for await (const ev of r.streamBatch([{ prompt: 'a', logprobs: 2 }])) if (!ev.done && ev.logprobs) console.log(ev.logprobs[0][0], ev.logprobs[0][1]);
  r.session.setLogprobs(3); const lp: Array<[number, number]> = r.session.logprobs(); r.session.setLogprobs(null);
  console.log(lp.length);
  const texts: string[] = await r.generateBatch(['a', { prompt: [1, 2], max_tokens: 4, seed: 1 }, { messages: [{ role: 'user', content: 'hi' }], stop: '\n' }], { temperature: 0 });
  for await (const ev of r.streamBatch(['a', 'b'], { signal: AbortSignal.timeout(1000) })) {
    if (ev.done) console.log(ev.index, ev.finish_reason, ev.stats?.generated_tokens, ev.error); else console.log(ev.index, ev.text);
  }
  console.log(texts.length, r.lastBatchStats.length, r.model.batchMaxTokens());
  try { r.model.evalBatch([r.session], [[1]]); } catch (e) { if (e instanceof ContextOverflowError) console.log(e.sessionIndex); }
  const ids: number[] = r.tokenize('hello');
  const back: string = r.detokenize(ids);
  await r.unload();
  const w: RealmWorker = await Realm.load(file, { worker: true });
  const wi: number[] = await w.tokenize('x');
  const wt: string[] = await w.generateBatch(['x', 'y'], { max_tokens: 2 });
  console.log(wt);
  await w.unload();
  const reg = new RealmRegistry({ nCtx: 512 });
  await reg.load('a', new ArrayBuffer(8));
  reg.list().forEach((e) => console.log(e.id, e.source));
  await reg.unload('a');
  const entries = await Realm.cache.list();
  await Realm.cache.delete(entries[0].url);
  await Realm.cache.clear();
  try { await r.generate('x'); } catch (e) { if (e instanceof ContextOverflowError) console.log('full'); }
  return text + res.choices[0].message.content + back + wi.length;
}

export async function toolsExample(r: Realm): Promise<string> {
  const res: ChatCompletion = await r.chat.completions.create({
    messages: [{ role: 'user', content: 'Weather in Paris?' }], tool_choice: 'auto', parallel_tool_calls: false,
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
  });
  const call = res.choices[0].message.tool_calls?.[0];
  return (call ? call.function.name + call.function.arguments : res.choices[0].message.content ?? '') + res.choices[0].finish_reason;
}
