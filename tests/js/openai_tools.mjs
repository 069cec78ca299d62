// The official `openai` npm package against `realm serve`: tool calls (two tools, streamed and
// not) and a json_schema response_format.  node openai_tools.mjs BASE_URL MODEL TOOLS_JSON
// Prints one JSON object; tests/test_server_tools.py validates the arguments with jsonschema.
import OpenAI from "openai";

const [baseURL, model, toolsJson] = process.argv.slice(2);
const tools = JSON.parse(toolsJson);
const client = new OpenAI({ baseURL, apiKey: "none", maxRetries: 0, timeout: 120_000 });
const messages = [{ role: "user", content: "What is the weather in Paris, in celsius?" }];
const out = {};

for (const choice of ["required", { type: "function", function: { name: tools[1].function.name } }]) {
  const key = typeof choice === "string" ? choice : "named";
  const r = await client.chat.completions.create({ model, messages, tools, tool_choice: choice, max_tokens: 80, temperature: 0 });
  out[key] = { finish: r.choices[0].finish_reason, calls: r.choices[0].message.tool_calls };
}

const stream = await client.chat.completions.create({
  model, messages, tools, tool_choice: "required", max_tokens: 80, temperature: 0, stream: true,
});
const calls = [];
let finish = null;
for await (const chunk of stream) {
  const c = chunk.choices[0];
  if (!c) continue;
  finish = c.finish_reason ?? finish;
  for (const d of c.delta.tool_calls ?? []) {
    calls[d.index] ??= { id: d.id, type: d.type, function: { name: "", arguments: "" } };
    calls[d.index].function.name += d.function?.name ?? "";
    calls[d.index].function.arguments += d.function?.arguments ?? "";
  }
}
out.stream = { finish, calls };

const schema = { type: "object", properties: { city: { type: "string", maxLength: 20 }, days: { type: "integer", minimum: 1, maximum: 7 } },
                 required: ["city", "days"], additionalProperties: false };
const js = await client.chat.completions.create({
  model, messages, max_tokens: 60, temperature: 0,
  response_format: { type: "json_schema", json_schema: { name: "forecast", schema, strict: true } },
});
out.json_schema = { schema, content: js.choices[0].message.content, finish: js.choices[0].finish_reason };
console.log(JSON.stringify(out));
