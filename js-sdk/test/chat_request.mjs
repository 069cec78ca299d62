// One OpenAI chat request through the SDK's realm.chat.completions.create, for tests that
// compare it with `realm serve` (tests/test_js_openai_parity.py):
//   node test/chat_request.mjs MODEL_PATH N_CTX < requests.json
// requests.json: a list of chat.completions requests. Prints a JSON list of
// {content, finish_reason, usage, tokens, stream_content} (stream_content: the same
// request again with stream: true, its deltas joined).
import { Realm } from '../src/index.js';

const [model, nCtx] = process.argv.slice(2);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const requests = JSON.parse(input);

const realm = await Realm.load(model, { nCtx: Number(nCtx) || 2048 });
const out = [];
try {
  for (const req of requests) {
    const res = await realm.chat.completions.create({ ...req, stream: false });
    const tokens = realm.lastStats.tokens.slice();
    let streamed = '';
    for await (const c of realm.chat.completions.create({ ...req, stream: true })) streamed += c.choices[0]?.delta?.content ?? '';
    out.push({
      content: res.choices[0].message.content, finish_reason: res.choices[0].finish_reason, usage: res.usage,
      tokens, stream_content: streamed,
    });
  }
} finally {
  await realm.unload();
}
process.stdout.write(JSON.stringify(out));
