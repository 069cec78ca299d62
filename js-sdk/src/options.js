// Generation options: camelCase spellings folded into the snake_case names the SDK
// (and the Python API) use.

const CAMEL = {
  maxTokens: 'max_tokens', topK: 'top_k', topP: 'top_p', minP: 'min_p', repeatPenalty: 'repeat_penalty',
  repeatLastN: 'repeat_last_n', frequencyPenalty: 'frequency_penalty', presencePenalty: 'presence_penalty',
  addSpecial: 'add_special', ignoreEos: 'ignore_eos', maxCompletionTokens: 'max_completion_tokens',
};

/** Generation options with camelCase spellings folded into snake_case. */
export function normalizeOptions(opts = {}) {
  const o = { ...opts };
  for (const [camel, snake] of Object.entries(CAMEL)) {
    if (o[camel] !== undefined && o[snake] === undefined) o[snake] = o[camel];
    delete o[camel];
  }
  return o;
}
