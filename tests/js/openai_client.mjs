// The official `openai` npm package against `realm serve`, unchanged:
//   node openai_client.mjs BASE_URL API_KEY MODEL
// Lists models, runs a chat and a completion, streams both, and prints one JSON
// object with what it saw (tests/test_server_clients.py checks it).
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const out = {};

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

const chat = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Name a colour." }], max_tokens: 5, temperature: 0,
});
out.chat = { text: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage };

const comp = await client.completions.create({ model, prompt: "The capital of France is", max_tokens: 3, temperature: 0 });
out.completion = { text: comp.choices[0].text, finish: comp.choices[0].finish_reason, usage: comp.usage };

const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Name a colour." }], max_tokens: 5, temperature: 0,
  stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null, n = 0;
for await (const chunk of stream) {
  n++;
  if (chunk.choices.length) {
    text += chunk.choices[0].delta.content ?? "";
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
out.chat_stream = { text, finish, usage, chunks: n };

const cstream = await client.completions.create({
  model, prompt: "The capital of France is", max_tokens: 3, temperature: 0, stream: true,
});
let ctext = "";
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? "";
out.completion_stream = { text: ctext };

try {
  await new OpenAI({ baseURL, apiKey: "sk-realm-wrong", maxRetries: 0 }).models.list();
  out.bad_key = "accepted";
} catch (e) {
  out.bad_key = { status: e.status, name: e.constructor.name };
}
console.log(JSON.stringify(out));
