// OpenAI chat requests through the SDK's realm.chat.completions.create, for tests that
// compare it with `realm serve` (tests/test_js_openai_parity.py):
//   node test/chat_request.mjs MODEL_PATH N_CTX < requests.json
// requests.json: a list of chat.completions requests. Prints a JSON list, one per request, of
// {content, finish_reason, usage, tokens, stream_content, choices, stream_choices, stream_usage}
// (content, finish_reason: choice 0's; tokens: choice 0's ids; choices: every choice's
// {index, content, finish_reason, logprobs, tool_calls}; stream_*: the same request again with stream:
// true and include_usage, each choice's deltas joined, its logprobs.content concatenated and its
// streamed tool_calls joined into {id, type, name, arguments}),
// or {error: {name, message, param}} for a request the SDK refuses.
import { Realm } from '../src/index.js';

const [model, nCtx] = process.argv.slice(2);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const requests = JSON.parse(input);

const realm = await Realm.load(model, { nCtx: Number(nCtx) || 2048 });
const out = [];
try {
  for (const req of requests) {
    let res;
    try {
      res = await realm.chat.completions.create({ ...req, stream: false });
    } catch (e) {
      out.push({ error: { name: e.name, message: e.message, param: e.param ?? null } });
      continue;
    }
    const tokens = realm.lastStats.tokens.slice();
    const stream = [];
    let streamUsage = null;
    let roles = 0;
    for await (const c of realm.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } })) {
      if (c.usage) streamUsage = c.usage;
      for (const ch of c.choices) {
        const s = (stream[ch.index] ??= { index: ch.index, content: '', finish_reason: null, logprobs: null });
        if (ch.delta.role) roles++;
        s.content += ch.delta.content ?? '';
        for (const t of ch.delta.tool_calls ?? []) {   // streamed calls: id, type, name first, then arguments
          const call = ((s.tool_calls ??= [])[t.index] ??= { id: null, type: null, name: '', arguments: '' });
          if (t.id) call.id = t.id;
          if (t.type) call.type = t.type;
          call.name += t.function?.name ?? '';
          call.arguments += t.function?.arguments ?? '';
        }
        if (ch.finish_reason) s.finish_reason = ch.finish_reason;
        if (ch.logprobs) (s.logprobs ??= []).push(...ch.logprobs.content);
      }
    }
    out.push({
      content: res.choices[0].message.content, finish_reason: res.choices[0].finish_reason, usage: res.usage,
      tokens, stream_content: stream[0].content,
      choices: res.choices.map((c) => ({ index: c.index, content: c.message.content, finish_reason: c.finish_reason, logprobs: c.logprobs,
        tool_calls: c.message.tool_calls ?? null })),
      stream_choices: stream, stream_usage: streamUsage, stream_roles: roles,
    });
  }
} finally {
  await realm.unload();
}
process.stdout.write(JSON.stringify(out));
