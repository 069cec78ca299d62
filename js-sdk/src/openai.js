// The OpenAI shapes: chat.completions.create over a Realm (chat.completion,
// chat.completion.chunk, usage, stream_options.include_usage) and the stream object
// the OpenAI SDK returns. Sampling follows OpenAI's defaults (sampling.js fromOpenAI);
// n choices and logprobs as `realm serve` (realm_web/server/completion.py, logprobs.py).
import { choiceOptions } from './sampling.js';
import { RealmError } from './errors.js';
import { parseTools, checkToolMessages, toolFormat, toolGrammar, promptMessages, toolMessage, toolDeltas } from './tools.js';

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

// The OpenAI logprobs of one token event (drive(): [[id, logprob], ...], the sampled
// token first): {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}, as
// realm_web/server/logprobs.py chat_content (token: the piece's bytes as UTF-8, invalid
// bytes replaced).
const utf8 = new TextDecoder('utf-8');
function logprobEntry(realm, entries) {
  const one = ([id, logprob]) => {
    const bytes = realm.model.piece(id, false);
    return { token: utf8.decode(bytes), logprob, bytes: Array.from(bytes) };
  };
  // a token the grammar refused (-Infinity) at OpenAI's floor, -9999, as in logprobs.py
  return { ...one(entries[0]), top_logprobs: entries.slice(1).map(([id, lp]) => one([id, lp === -Infinity ? -9999 : lp])) };
}

/** Usage of a request's choices: the prompt once (choice 0's), the completion tokens of every choice. */
export function usageOfChoices(stats) {
  const u = usageOf(stats[0]);
  const gen = stats.reduce((a, s) => a + s.generated_tokens, 0);
  u.completion_tokens = gen;
  u.total_tokens = u.prompt_tokens + gen;
  return u;
}

/**
 * realm.chat.completions.create(req) for a Realm (chatIds, streamBatch, model, id): a
 * Promise of a chat.completion, or (stream: true) a streamResult of chunks. n choices
 * (choiceOptions: choice 0 is n = 1's, choice i samples from seed + i) run as one batch
 * (Realm.streamBatch: one forward pass a step for all of them); logprobs / top_logprobs
 * give each choice's logprobs.content, as `realm serve`.
 */
export function createChatCompletion(realm, req = {}) {
  const created = Math.floor(Date.now() / 1000);
  const id = completionId();
  const model = req.model || realm.id;
  const tplOpts = { chatTemplate: req.chat_template, extra: req.chat_template_kwargs };
  let opts;
  let tooling = null;   // {fmt, tools, choice} when the answer is tool calls (tools.js)
  try {
    opts = choiceOptions(req);   // checks the request before anything runs
    tooling = toolSettings(realm, req, opts[0]);
    if (tooling && tooling.grammar) {
      const grammar = tooling.grammar;
      opts = opts.map((o) => { const c = { ...o, grammar }; delete c.json_schema; return c; });
    } else if (opts[0].json_schema != null) {   // the core's JSON Schema -> GBNF (realm_json_schema_gbnf), as realm serve
      const param = 'response_format.json_schema.schema';
      let grammar;
      try {
        grammar = realm.model.jsonSchemaGbnf(opts[0].json_schema);
      } catch (e) {
        const err = new RealmError(`Invalid '${param}': ${e.message}`);
        err.param = param;
        throw err;
      }
      opts = opts.map((o) => { const c = { ...o, grammar }; delete c.json_schema; return c; });
    }
  } catch (e) {
    const p = Promise.reject(e);
    if (req.stream) p[Symbol.asyncIterator] = () => ({ next: () => p, return: async () => ({ done: true }) });
    return p;
  }
  const n = opts.length;
  const answersTools = !!(tooling && tooling.choice != null);
  const withLogprobs = opts[0].logprobs != null;
  const signal = req.signal;

  // the choices' events (streamBatch's), choice 0's stats as realm.lastStats; a choice's error ends the request
  async function* events(stats) {
    const messages = tooling ? promptMessages(req.messages, tooling.tools, tooling.choice, tooling.template) : null;
    const ids = messages ? await realm.chatIds(messages.messages, { ...tplOpts, extra: { ...tplOpts.extra, ...messages.extra } })
      : await realm.chatIds(req.messages, tplOpts);
    const prompts = opts.map((o) => {
      const p = { ...o, prompt: ids };
      delete p.signal;
      return p;
    });
    for await (const ev of realm.streamBatch(prompts, { signal })) {
      if (ev.done) {
        if (ev.error) throw ev.error;
        stats[ev.index] = ev.stats;
        if (ev.index === 0 && 'lastStats' in realm) realm.lastStats = ev.stats;
      }
      yield ev;
    }
  }

  if (!req.stream) {
    return (async () => {
      const stats = new Array(n).fill(null);
      const texts = new Array(n).fill('');
      const content = Array.from({ length: n }, () => []);
      const finish = new Array(n).fill(null);
      for await (const ev of events(stats)) {
        if (ev.done) finish[ev.index] = ev.finish_reason;
        else {
          texts[ev.index] += ev.text;
          if (ev.logprobs && ev.logprobs.length) content[ev.index].push(logprobEntry(realm, ev.logprobs));
        }
      }
      return {
        id, object: 'chat.completion', created, model,
        choices: texts.map((text, i) => {
          const logprobs = withLogprobs ? { content: content[i], refusal: null } : null;
          if (!answersTools) return { index: i, message: { role: 'assistant', content: text, refusal: null }, logprobs, finish_reason: finish[i] };
          const { message, called } = toolMessage(text, tooling.fmt);
          return { index: i, message, logprobs, finish_reason: finishOf(finish[i], called) };
        }),
        usage: usageOfChoices(stats),
      };
    })();
  }
  const includeUsage = !!(req.stream_options && req.stream_options.include_usage);
  async function* chunks() {
    const stats = new Array(n).fill(null);
    const base = { id, object: 'chat.completion.chunk', created, model };
    const chunk = (index, delta, logprobs, finish) => ({ ...base, choices: [{ index, delta, logprobs, finish_reason: finish }] });
    for (let i = 0; i < n; i++) yield chunk(i, { role: 'assistant', content: '' }, null, null);
    const held = Array.from({ length: n }, () => []);   // tool answers: whole before they become deltas
    for await (const ev of events(stats)) {
      if (ev.done && answersTools) {
        const { deltas, called } = toolDeltas(held[ev.index].join(''), tooling.fmt);
        for (const d of deltas) yield chunk(ev.index, d, null, null);
        yield chunk(ev.index, {}, null, finishOf(ev.finish_reason, called));
        continue;
      }
      if (ev.done) {
        yield chunk(ev.index, {}, null, ev.finish_reason);
        continue;
      }
      if (answersTools) {
        held[ev.index].push(ev.text);
        continue;
      }
      const lp = ev.logprobs && ev.logprobs.length ? { content: [logprobEntry(realm, ev.logprobs)], refusal: null } : null;
      if (ev.text || lp) yield chunk(ev.index, { content: ev.text }, lp, null);
    }
    if (includeUsage) yield { ...base, choices: [], usage: usageOfChoices(stats) };
  }
  return streamResult(chunks());
}

// A finished answer that calls tools ends with "tool_calls" (as OpenAI's).
function finishOf(reason, called) { return called && reason === 'stop' ? 'tool_calls' : reason; }

// tools + tool_choice + parallel_tool_calls, checked as `realm serve` (server/tool_calls.py
// apply_tools): null without tools, else {fmt, tools, choice, template, grammar} (grammar:
// the answer's GBNF, none with tool_choice 'none'). Messages' tool_calls are checked here too.
function toolSettings(realm, req, opt) {
  checkToolMessages(req.messages);
  const { tools, choice } = parseTools(req.tools, req.tool_choice);
  const template = req.chat_template ?? realm.model.meta('tokenizer.chat_template') ?? null;
  if (!tools.length && choice == null) return null;
  const fmt = toolFormat(template);
  if (choice == null) return { fmt, tools, choice, template, grammar: null };
  const parallel = req.parallel_tool_calls ?? true;
  const bad = (message, param) => { const e = new RealmError(message); e.param = param; return e; };
  if (typeof parallel !== 'boolean') throw bad("Invalid type for 'parallel_tool_calls': expected a boolean.", 'parallel_tool_calls');
  const rf = req.response_format && req.response_format.type;
  const rfKind = rf === 'json_object' || rf === 'json_schema' ? rf : 'text';
  if (req.grammar && rfKind === 'text') throw bad("Give either 'grammar' or 'tools', not both.", 'grammar');
  if (rfKind !== 'text' && choice !== 'auto') {
    throw bad("'response_format' goes with tool_choice 'auto' (it shapes the reply when no tool is called).", 'response_format');
  }
  const response = rfKind === 'json_object' ? { type: 'object' } : rfKind === 'json_schema' ? opt.json_schema : null;
  const grammar = toolGrammar(realm.model, fmt, tools, choice, response, parallel,
    rfKind === 'json_schema' ? 'response_format.json_schema.schema' : null);
  return { fmt, tools, choice, template, grammar };
}
