// The OpenAI shapes: chat.completions.create over a Realm (chat.completion,
// chat.completion.chunk, usage, stream_options.include_usage) and the stream object
// the OpenAI SDK returns. Sampling follows OpenAI's defaults (sampling.js fromOpenAI).
import { fromOpenAI } from './sampling.js';
import { newStats } from './generation.js';

let seq = 0;
export function completionId() {
  const r = Math.random().toString(36).slice(2, 10);
  return `chatcmpl-${Date.now().toString(36)}${(seq++).toString(36)}${r}`;
}

export function usageOf(stats) {
  return {
    prompt_tokens: stats.prompt_tokens,
    completion_tokens: stats.generated_tokens,
    total_tokens: stats.prompt_tokens + stats.generated_tokens,
    prompt_tokens_details: { cached_tokens: stats.cached_tokens },
  };
}

/**
 * The result of a streaming create(): like the OpenAI SDK, a Promise of an async
 * iterable of chunks; for convenience the promise itself is async-iterable too.
 */
export function streamResult(iter) {
  const stream = {
    [Symbol.asyncIterator]() { return iter; },
    /** Stop the stream (as the OpenAI SDK's stream.controller.abort()). */
    controller: { abort: () => iter.return() },
  };
  const p = Promise.resolve(stream);
  p[Symbol.asyncIterator] = () => iter;
  return p;
}

/**
 * realm.chat.completions.create(req) for a Realm (chatIds, generate, stream, id):
 * a Promise of a chat.completion, or (stream: true) a streamResult of chunks.
 */
export function createChatCompletion(realm, req = {}) {
  const created = Math.floor(Date.now() / 1000);
  const id = completionId();
  const model = req.model || realm.id;
  const o = fromOpenAI(req);
  const tplOpts = { chatTemplate: req.chat_template, extra: req.chat_template_kwargs };
  if (!req.stream) {
    return (async () => {
      const ids = await realm.chatIds(req.messages, tplOpts);
      const stats = newStats();
      const content = await realm.generate(ids, { ...o, stats });
      return {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: stats.finish_reason }],
        usage: usageOf(stats),
      };
    })();
  }
  const includeUsage = !!(req.stream_options && req.stream_options.include_usage);
  async function* chunks() {
    const ids = await realm.chatIds(req.messages, tplOpts);
    const stats = newStats();
    const base = { id, object: 'chat.completion.chunk', created, model };
    yield { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] };
    for await (const piece of realm.stream(ids, { ...o, stats })) {
      yield { ...base, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }] };
    }
    yield { ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: stats.finish_reason }] };
    if (includeUsage) yield { ...base, choices: [], usage: usageOf(stats) };
  }
  return streamResult(chunks());
}
