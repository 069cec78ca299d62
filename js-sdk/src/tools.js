// Tool calls (OpenAI's tools + tool_choice) for chat.completions.create: a port of
// realm_web/tools.py (the server's), so the JS SDK and `realm serve` give the same prompt,
// the same grammar and the same tool_calls for the same request and seed. Two formats, as
// llama.cpp's common/chat.cpp: "generic" (one JSON object, {"tool_calls": [{name,
// arguments}]} or {"response": ...}, constrained by a JSON Schema built from the tools'
// parameters), "hermes" (<tool_call> blocks) for templates that write those tags and "llama3"
// (one bare {"name", "parameters"} call) for Llama 3.1+ tool templates.
import { RealmError } from './errors.js';

export const INSTRUCTION = 'Respond in JSON format, either with `tool_calls` (a request to call tools) or with `response` ' +
  "(a reply to the user's request).";
export const REQUIRED_INSTRUCTION = 'Respond in JSON format with `tool_calls` (a request to call tools).';

function badRequest(message, param) {
  const e = new RealmError(message);
  e.param = param;
  return e;
}

function isObject(v) { return v != null && typeof v === 'object' && !Array.isArray(v); }

/**
 * JSON text as Python's json.dumps(v, ensure_ascii=False) writes it (", " and ": "
 * separators), so prompts and arguments are byte for byte the server's. (A number is
 * written as JS writes it: Python's 1.0 is 1 here.)
 */
export function pyJson(v) {
  if (Array.isArray(v)) return '[' + v.map(pyJson).join(', ') + ']';
  if (isObject(v)) return '{' + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ': ' + pyJson(x)).join(', ') + '}';
  if (typeof v === 'bigint') return v.toString();
  if (v === undefined) return 'null';
  return JSON.stringify(v);
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * OpenAI's tools and tool_choice, checked as tools.py parse_tools (same messages): {tools:
 * [{name, description, parameters}], choice} where choice is 'auto', 'required', a tool's
 * name, or null (no tools: absent, empty or 'none'). Throws a RealmError whose param names the field.
 */
export function parseTools(tools, toolChoice) {
  if (tools == null || (Array.isArray(tools) && tools.length === 0)) {
    if (![undefined, null, 'none', 'auto'].includes(toolChoice)) throw badRequest("Invalid 'tool_choice': it needs 'tools'.", 'tool_choice');
    return { tools: [], choice: null };
  }
  if (!Array.isArray(tools)) throw badRequest("Invalid 'tools': expected an array of tools.", 'tools');
  if (tools.length > 128) throw badRequest(`Invalid 'tools': at most 128 tools, got ${tools.length}.`, 'tools');
  const out = [];
  const names = new Set();
  tools.forEach((t, i) => {
    const key = `tools[${i}]`;
    if (!isObject(t) || t.type !== 'function' || !isObject(t.function)) {
      throw badRequest(`Invalid '${key}': expected {"type": "function", "function": {...}}.`, key);
    }
    const f = t.function;
    if (typeof f.name !== 'string' || !NAME.test(f.name)) {
      throw badRequest(`Invalid '${key}.function.name': 1-64 letters, digits, '_' or '-'.`, `${key}.function.name`);
    }
    if (names.has(f.name)) throw badRequest(`Invalid '${key}.function.name': '${f.name}' is given twice.`, `${key}.function.name`);
    names.add(f.name);
    const params = 'parameters' in f ? f.parameters : { type: 'object', properties: {} };
    if (!isObject(params)) {
      throw badRequest(`Invalid '${key}.function.parameters': expected a JSON Schema object.`, `${key}.function.parameters`);
    }
    if (f.description != null && typeof f.description !== 'string') {
      throw badRequest(`Invalid '${key}.function.description': expected a string.`, `${key}.function.description`);
    }
    out.push({ name: f.name, description: f.description || '', parameters: params });
  });
  if (toolChoice == null || toolChoice === 'auto') return { tools: out, choice: 'auto' };
  if (toolChoice === 'none') return { tools: out, choice: null };
  if (toolChoice === 'required') return { tools: out, choice: 'required' };
  if (isObject(toolChoice) && toolChoice.type === 'function' && isObject(toolChoice.function)) {
    const name = toolChoice.function.name;
    if (!names.has(name)) {
      throw badRequest(`Invalid 'tool_choice.function.name': no tool is named ${typeof name === 'string' ? `'${name}'` : String(name)}.`, 'tool_choice.function.name');
    }
    return { tools: out, choice: name };
  }
  throw badRequest("Invalid 'tool_choice': expected 'none', 'auto', 'required' or " +
    '{"type": "function", "function": {"name": ...}}.', 'tool_choice');
}

/** Messages' tool_calls (assistant) and tool_call_id, checked as server/tool_calls.py tool_message_fields. */
export function checkToolMessages(messages) {
  if (!Array.isArray(messages)) return;
  messages.forEach((m, i) => {
    if (!isObject(m)) return;
    const calls = m.tool_calls;
    if (calls != null) {
      const key = `messages[${i}].tool_calls`;
      if (m.role !== 'assistant' || !Array.isArray(calls)) {
        throw badRequest(`Invalid '${key}': only an assistant message has tool_calls (an array).`, key);
      }
      calls.forEach((c, j) => {
        const f = isObject(c) ? c.function : null;
        const args = isObject(f) ? (f.arguments ?? '') : null;
        if (!isObject(f) || typeof f.name !== 'string' || !(typeof args === 'string' || isObject(args))) {
          throw badRequest(`Invalid '${key}[${j}]': expected {"id", "type": "function", "function": {"name", "arguments"}}.`, `${key}[${j}]`);
        }
      });
    }
    if (m.tool_call_id != null && typeof m.tool_call_id !== 'string') {
      throw badRequest(`Invalid 'messages[${i}].tool_call_id': expected a string.`, `messages[${i}].tool_call_id`);
    }
  });
}

/** The JSON Schema of a generic-format answer (tools.py envelope_schema). */
export function envelopeSchema(tools, choice, responseSchema = null, parallel = true) {
  const chosen = tools.filter((t) => choice === 'auto' || choice === 'required' || t.name === choice);
  const calls = chosen.map((t) => ({
    type: 'object', properties: { name: { const: t.name }, arguments: t.parameters },
    required: ['name', 'arguments'], additionalProperties: false,
  }));
  const items = { type: 'array', items: calls.length === 1 ? calls[0] : { anyOf: calls }, minItems: 1 };
  if ((choice !== 'auto' && choice !== 'required') || !parallel) items.maxItems = 1;   // parallel_tool_calls: false
  const withCalls = { type: 'object', properties: { tool_calls: items }, required: ['tool_calls'], additionalProperties: false };
  if (choice !== 'auto') return withCalls;
  const reply = { type: 'object', properties: { response: responseSchema || { type: 'string' } }, required: ['response'], additionalProperties: false };
  return { anyOf: [withCalls, reply] };
}

const LLAMA3_MARK = '<|start_header_id|>ipython<|end_header_id|>';   // how llama.cpp spots a Llama 3.x tool template
const PYTHON_TAG = '<|python_tag|>';

/** 'hermes' for templates that write <tool_call> tags, 'llama3' for Llama 3.1+ tool templates (an ipython role), else 'generic'. */
export function toolFormat(template) {
  if (template && template.includes('<tool_call>')) return 'hermes';
  if (template && template.includes(LLAMA3_MARK)) return 'llama3';
  return 'generic';
}

/** GBNF of an answer in format fmt (tools.py hermes_grammar; the generic one is the envelope's), by the core's
 * converter; each tool's schema (and responseParam's, the reply's) is converted alone first, so a bad one is named. */
export function toolGrammar(model, fmt, tools, choice, responseSchema = null, parallel = true, responseParam = null) {
  const convert = (schema, param, prefix = '') => {
    try {
      return model.jsonSchemaGbnf(schema, prefix);
    } catch (e) {
      throw badRequest(`Invalid '${param}': ${e.message}`, param);
    }
  };
  tools.forEach((t, i) => convert(t.parameters, `tools[${i}].function.parameters`));   // a bad one named alone
  if (responseParam) convert(responseSchema, responseParam);
  if (fmt === 'llama3') {   // one bare {"name", "parameters"} call a turn (tools.py llama3_grammar)
    const calls = tools.filter((t) => choice === 'auto' || choice === 'required' || t.name === choice).map((t) => ({
      type: 'object', properties: { name: { const: t.name }, parameters: t.parameters },
      required: ['name', 'parameters'], additionalProperties: false,
    }));
    const rules = convert(calls.length === 1 ? calls[0] : { anyOf: calls }, 'tools', 'call-');
    if (choice !== 'auto') return `root ::= call-root\n${rules}`;
    const text = responseSchema == null ? 'text ::= [^{\\x00] [^\\x00]*\n'
      : 'text ::= reply-root\n' + convert(responseSchema, 'response_format.json_schema.schema', 'reply-');
    return `root ::= call-root | text\n${text}${rules}`;
  }
  if (fmt !== 'hermes') return convert(envelopeSchema(tools, choice, responseSchema, parallel), 'tools');
  const one = envelopeSchema(tools, choice !== 'auto' ? choice : 'required').properties.tool_calls.items;
  const rules = convert(one, 'tools', 'call-');
  const block = '"<tool_call>\\n" call-root "</tool_call>"';
  const calls = (choice !== 'auto' && choice !== 'required') || !parallel ? block : `${block} ("\\n" ${block})*`;
  if (choice !== 'auto') return `root ::= ${calls}\n${rules}`;
  const text = responseSchema == null ? 'text ::= [^<\\x00] [^\\x00]*\n'
    : 'text ::= reply-root\n' + convert(responseSchema, 'response_format.json_schema.schema', 'reply-');
  return `root ::= ${calls} | text\n${text}${rules}`;
}

function argumentsValue(a) {   // an assistant message's arguments (OpenAI sends a JSON string) as a value
  if (typeof a === 'string') {
    try { return JSON.parse(a); } catch { return a; }
  }
  return a ?? {};
}

const asTools = (tools) => tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } }));

/** {messages, extra}: what to render for a chat with tools (tools.py prompt_messages). */
export function promptMessages(messages, tools, choice, template) {
  const nativeCalls = !!template && template.includes('tool_calls');
  const out = messages.map((m0) => {
    const m = { ...m0 };
    const calls = m.tool_calls;
    if (calls && calls.length && !nativeCalls) {   // the model's own answer format, as its content
      m.content = pyJson({ tool_calls: calls.map((c) => ({ name: c.function.name, arguments: argumentsValue(c.function.arguments) })) });
      delete m.tool_calls;
    } else if (calls && calls.length) {
      m.tool_calls = calls.map((c) => ({ ...c, function: { ...c.function, arguments: argumentsValue(c.function.arguments) } }));
    }
    return m;
  });
  const extra = {};
  if (choice == null) return { messages: out, extra };
  if (toolFormat(template) !== 'generic') {   // the template describes the tools and the format itself
    extra.tools = asTools(tools);
    return { messages: out, extra };
  }
  let described = '';
  if (template && template.includes('tools')) extra.tools = asTools(tools);
  else {
    described = 'You can call these tools:\n' +
      tools.map((t) => pyJson({ name: t.name, description: t.description, parameters: t.parameters })).join('\n') + '\n\n';
  }
  const note = described + (choice === 'auto' ? INSTRUCTION : REQUIRED_INSTRUCTION);
  if (out.length && out[0].role === 'system') out[0] = { ...out[0], content: (out[0].content || '') + '\n\n' + note };
  else out.unshift({ role: 'system', content: note });
  return { messages: out, extra };
}

function callId() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return 'call_' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function call(name, args) {
  return { id: callId(), type: 'function', function: { name, arguments: pyJson(args) } };
}

const HERMES_CALL = /<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/g;

/** {content, calls} from an answer in format fmt (tools.py parse_answer); text that is not one (cut short) is content. */
export function parseAnswer(text, fmt = 'generic') {
  if (fmt === 'llama3') {
    let body = text.trim();
    if (body.startsWith(PYTHON_TAG)) body = body.slice(PYTHON_TAG.length).trimStart();
    let v;
    try { v = JSON.parse(body); } catch { return { content: text, calls: null }; }
    const keysOk = isObject(v) && Object.keys(v).every((k) => k === 'type' || k === 'name' || k === 'parameters');
    if (keysOk && typeof v.name === 'string' && 'parameters' in v) return { content: null, calls: [call(v.name, v.parameters)] };
    return { content: text, calls: null };
  }
  if (fmt === 'hermes') {
    const calls = [];
    for (const [, body] of text.matchAll(HERMES_CALL)) {
      let v;
      try { v = JSON.parse(body); } catch { return { content: text, calls: null }; }
      if (!isObject(v) || !('name' in v) || !('arguments' in v)) return { content: text, calls: null };
      calls.push(call(v.name, v.arguments));
    }
    const rest = text.replace(HERMES_CALL, '').trim();
    return calls.length ? { content: rest || null, calls } : { content: text, calls: null };
  }
  let v;
  try { v = JSON.parse(text); } catch { return { content: text, calls: null }; }
  if (isObject(v) && Array.isArray(v.tool_calls)) return { content: null, calls: v.tool_calls.map((c) => call(c.name, c.arguments)) };
  if (isObject(v) && 'response' in v) return { content: typeof v.response === 'string' ? v.response : pyJson(v.response), calls: null };
  return { content: text, calls: null };
}

/** {message, called}: the assistant message of a tool-enabled answer (server/tool_calls.py message). */
export function toolMessage(text, fmt) {
  const { content, calls } = parseAnswer(text, fmt);
  const message = { role: 'assistant', content, refusal: null };
  if (calls) message.tool_calls = calls;
  return { message, called: !!calls };
}

/** {deltas, called}: the streamed deltas (each call's id, type and name, then its arguments), as tool_calls.py deltas. */
export function toolDeltas(text, fmt) {
  const { content, calls } = parseAnswer(text, fmt);
  if (!calls) return { deltas: content ? [{ content }] : [], called: false };
  const deltas = [];
  calls.forEach((c, index) => {
    deltas.push({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] });
    deltas.push({ tool_calls: [{ index, function: { arguments: c.function.arguments } }] });
  });
  return { deltas, called: true };
}
