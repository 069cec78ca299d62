// One generation as a state machine: what to feed the session next, and what each
// sampled token means (text that is now final, finished or not, why). It holds no
// session and calls no core: a driver evaluates what feed() says, samples, and hands
// the token to accept(). realm.js drives one session with it; a batched driver can
// drive many (one core call for all of their feeds). The JS twin of the Python
// Realm's generation (realm_web/realm.py; semantics equal, tested on both sides).
//
//   const g = new Generation(ids, { nCtx, vocab: model, max_tokens, ignore_eos, stop });
//   session.truncate(g.reuse(session.tokens()));   // longest cached prefix kept
//   session.eval(g.feed()); g.prefilled();         // the prompt's uncached tail
//   let r = g.accept(session.sample());            // {token, text, done}
//   while (!r.done) r = g.accept(session.step(g.feed()[0]));
//   g.finishReason                                 // 'stop' | 'length'
import { RealmError, ContextOverflowError } from './errors.js';
import { StopFilter, stopList } from './stops.js';

/** The plain fields of generation stats (what crosses to and from a worker). */
export const STATS_FIELDS = Object.freeze([
  'prompt_tokens', 'cached_tokens', 'generated_tokens', 'prompt_seconds', 'generate_seconds', 'finish_reason', 'tokens',
]);

/** Generation stats (realm.lastStats), optionally filled from a plain object. */
export function newStats(from = null) {
  const s = {
    prompt_tokens: 0, cached_tokens: 0, generated_tokens: 0, prompt_seconds: 0, generate_seconds: 0,
    finish_reason: '', tokens: [],
    get prompt_tps() { const n = this.prompt_tokens - this.cached_tokens; return this.prompt_seconds > 0 ? n / this.prompt_seconds : 0; },
    get generate_tps() { return this.generate_seconds > 0 ? this.generated_tokens / this.generate_seconds : 0; },
  };
  if (from) for (const k of STATS_FIELDS) if (from[k] !== undefined) s[k] = from[k];
  return s;
}

/** The stats' plain fields (structured-clone safe). */
export function plainStats(s) {
  const out = {};
  for (const k of STATS_FIELDS) out[k] = s[k];
  return out;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

/**
 * Prompt ids: a string is tokenized (BOS/EOS as the vocabulary says unless addSpecial is
 * false; special tokens parsed); an iterable of ids is taken as is.
 */
export function promptIds(vocab, prompt, addSpecial = true) {
  if (typeof prompt === 'string') return vocab.tokenize(prompt, addSpecial, true);
  if (prompt && typeof prompt[Symbol.iterator] === 'function') return Array.from(prompt, (x) => Number(x));
  throw new RealmError('a prompt is a string or an array of token ids');
}

/**
 * Prompt ids of a chat prompt rendered from the model's template: the template already
 * wrote any BOS it wants (tokenized without adding specials, special tokens parsed);
 * BOS is prepended only when the vocabulary adds one (add_bos) and it is missing.
 */
export function chatPromptIds(vocab, text) {
  const ids = vocab.tokenize(text, false, true);
  const info = vocab.info;
  if (info.add_bos && info.bos >= 0 && (!ids.length || ids[0] !== info.bos)) ids.unshift(info.bos);
  return ids;
}

/** Length of the common prefix of two id sequences. */
export function commonPrefix(a, b) {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

export class Generation {
  /**
   * ids: the prompt. opts: nCtx (the session's context), vocab ({isEog(id), piece(id, special)
   * -> bytes}: a CoreModel), max_tokens (128; null or negative: until the context is full),
   * ignore_eos, stop (string or list; applies with text), text (decode text: default true;
   * false gives tokens only), stats (filled in; default a new one).
   */
  constructor(ids, { nCtx, vocab, max_tokens = 128, ignore_eos = false, stop = null, text = true, stats = null } = {}) {
    this.ids = ids;
    this.nCtx = nCtx;
    this.vocab = vocab;
    this.stats = stats || newStats();
    this.stats.prompt_tokens = ids.length;
    if (ids.length === 0) throw new RealmError('the prompt is empty (no tokens)');
    if (ids.length >= nCtx) {
      throw new ContextOverflowError(`the prompt has ${ids.length} tokens; the context holds ${nCtx} (leave room to generate)`);
    }
    this.maxTokens = max_tokens == null || max_tokens < 0 ? nCtx : max_tokens;
    this.ignoreEos = !!ignore_eos;
    this.text = text;
    const stops = text ? stopList(stop) : [];
    this.filter = stops.length ? new StopFilter(stops) : null;
    this.decoder = text ? new TextDecoder('utf-8') : null;
    this.keep = 0;          // cached prompt positions kept
    this.last = -1;         // the last accepted token (fed next)
    this.phase = 'start';   // start -> prompt -> decode -> done
    this.finishReason = null;
    this._t0 = now();
  }

  get done() { return this.phase === 'done'; }

  /**
   * How many positions of a session's cache (its token ids) to keep: the longest common
   * prefix with the prompt, less one when it covers the whole prompt (at least one token
   * is evaluated, for fresh logits). The driver truncates the session to it.
   */
  reuse(cached = []) {
    if (this.phase !== 'start') throw new RealmError('reuse() comes first, once');
    this.keep = Math.min(commonPrefix(cached, this.ids), this.ids.length - 1);
    this.stats.cached_tokens = this.keep;
    this.phase = 'prompt';
    this._t0 = now();
    return this.keep;
  }

  /** The ids to evaluate before the next sample: the prompt's uncached tail, then the last accepted token. */
  feed() {
    if (this.phase === 'start') this.reuse([]);
    if (this.phase === 'prompt') return this.ids.slice(this.keep);
    if (this.phase === 'decode') return [this.last];
    return [];
  }

  /** The prompt has been evaluated (its time goes to stats.prompt_seconds). */
  prefilled() {
    if (this.phase !== 'prompt') throw new RealmError('prefilled() follows the prompt feed');
    this.stats.prompt_seconds = now() - this._t0;
    this.phase = 'decode';
    this._t0 = now();
  }

  /**
   * A token sampled after the last feed. Returns {token, text, done}: token is the id
   * generated (null when tok ended the generation unemitted: an end-of-generation id, or
   * max_tokens reached), text what may be shown now (whole UTF-8 characters, any tail
   * that could still become a stop string held back; at the end, everything left), done
   * whether the generation is over (finishReason / stats.finish_reason say why).
   */
  accept(tok) {
    if (this.phase === 'prompt') this.prefilled();
    if (this.phase !== 'decode') throw new RealmError(this.done ? 'this generation has finished' : 'accept() follows the prompt feed');
    const s = this.stats;
    if (!this.ignoreEos && this.vocab.isEog(tok)) return this._end('stop', null, '');
    if (s.generated_tokens >= this.maxTokens) return this._end('length', null, '');
    s.generated_tokens++;
    s.tokens.push(tok);
    this.last = tok;
    let text = '';
    if (this.text) {
      const piece = this.decoder.decode(this.vocab.piece(tok, false), { stream: true });
      text = this.filter ? this.filter.push(piece) : piece;
      if (this.filter && this.filter.hit) return this._end('stop', tok, text, false);
    }
    // the cache holds the prompt and every emitted token but this one: no room to evaluate it
    if (this.ids.length + s.generated_tokens - 1 >= this.nCtx) return this._end('length', tok, text);
    return { token: tok, text, done: false };
  }

  _end(reason, token, text, flush = true) {
    this.phase = 'done';
    this.finishReason = reason;
    if (flush && this.text) {
      const rest = this.decoder.decode();
      if (this.filter) {
        text += this.filter.push(rest);
        if (this.filter.hit) this.finishReason = 'stop'; // (only text that ends mid-character gets here)
        else text += this.filter.flush();
      } else {
        text += rest;
      }
    }
    this.stats.finish_reason = this.finishReason;
    this.close();
    return { token, text, done: true };
  }

  /** The generation ends here (finished, failed or abandoned): stats.generate_seconds. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this.phase === 'decode' || this.phase === 'done') this.stats.generate_seconds = now() - this._t0;
  }
}
