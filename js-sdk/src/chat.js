// Chat templates: the Jinja template a GGUF carries (tokenizer.chat_template),
// rendered with @huggingface/jinja (the engine transformers.js uses: trim_blocks and
// lstrip_blocks on, raise_exception and strftime_now defined), as the Python host
// renders it with a sandboxed jinja2.
import { RealmError } from './errors.js';

// What llama.cpp falls back to when a GGUF carries no template.
export const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + " +
  "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

let jinjaModule = null;

/** Use this @huggingface/jinja module (e.g. one your bundler or import map provides). */
export function setJinja(mod) { jinjaModule = mod; }

async function loadJinja() {
  if (jinjaModule) return jinjaModule;
  const errors = [];
  // A bare specifier works in Node, bundlers and pages with an import map; a plain
  // browser page serving this package's directory gets it from node_modules beside it.
  const candidates = [
    '@huggingface/jinja',
    new URL('../node_modules/@huggingface/jinja/dist/index.js', import.meta.url).href,
    new URL('../../@huggingface/jinja/dist/index.js', import.meta.url).href,
  ];
  for (const spec of candidates) {
    try {
      jinjaModule = await import(/* @vite-ignore */ /* webpackIgnore: true */ spec);
      return jinjaModule;
    } catch (e) {
      errors.push(`${spec}: ${e.message}`);
    }
  }
  throw new RealmError('@huggingface/jinja could not be loaded (npm install @huggingface/jinja, or call setJinja(module)): ' + errors.join('; '));
}

const compiledTemplates = new Map();

/** Render messages ([{role, content}, ...]) into the prompt text. */
export async function renderChat(template, messages, { addGenerationPrompt = true, bosToken = '', eosToken = '', extra = {} } = {}) {
  const src = template || CHATML;
  if (!Array.isArray(messages)) throw new RealmError('messages must be an array of {role, content}');
  for (const m of messages) {
    if (!m || typeof m !== 'object' || !('role' in m)) throw new RealmError(`each chat message needs a 'role' (got ${JSON.stringify(m)})`);
  }
  const { Template } = await loadJinja();
  let tpl = compiledTemplates.get(src);
  try {
    if (!tpl) { tpl = new Template(src); compiledTemplates.set(src, tpl); }
    return tpl.render({ messages, add_generation_prompt: addGenerationPrompt, bos_token: bosToken, eos_token: eosToken, ...extra });
  } catch (e) {
    throw new RealmError(`the model's chat template failed: ${e.message}`, { cause: e });
  }
}
