// One generation as a state machine, advanced from outside one step at a time: prefix
// reuse, end of generation, max_tokens, a full context, stop strings, incremental UTF-8,
// finish reasons and stats, written once. It never calls the core: the driver asks what
// to feed next, evaluates it however it likes (advance: one session; advanceBatch: one
// core call for many sessions), and hands back what was sampled. drive() below is the
// one loop over generations (Realm.stream & co. with one, Realm.streamBatch with many). The JS twin of
// realm_web/generation.py, rule for rule and name for name:
//
//   const g = new Generation(vocab, ids, nCtx, { max_tokens, stop, ignore_eos });
//   session.truncate(g.reuse(session.tokens()));   // keep the longest common prefix
//   while (!g.done) {
//     const ids = g.nextIds(EVAL_BATCH);            // a prompt chunk, or the one token to decode
//     evaluate ids
//     if (g.fed(ids.length)) text += g.accept(sample());   // g.token, g.done, g.finishReason
//   }
import { RealmError, ContextOverflowError } from './errors.js';
import { StopFilter, stopList } from './stops.js';
import { abortReason, throwIfAborted, yieldToEventLoop } from './abort.js';

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

export const PREFILL = 'prefill';
export const DECODE = 'decode';
export const DONE = 'done';

/** The state of one generation: PREFILL (prompt chunks) -> DECODE (one token per step) -> DONE. */
export class Generation {
  /**
   * vocab: {isEog(id), piece(id, special) -> bytes} (a CoreModel). ids: the prompt (not
   * empty, shorter than nCtx). opts: max_tokens (128; null or negative: until the context
   * is full), stop (string or list), ignore_eos, text (decode text: default true; false:
   * ids only, no stop strings), stats (filled in; default a new one).
   */
  constructor(vocab, ids, nCtx, { max_tokens = 128, stop = null, ignore_eos = false, text = true, stats = null } = {}) {
    this.vocab = vocab;
    this.ids = Array.from(ids);
    this.nCtx = nCtx;
    this.stats = stats || newStats();
    this.stats.prompt_tokens = this.ids.length;
    if (this.ids.length === 0) throw new RealmError('the prompt is empty (no tokens)');
    if (this.ids.length >= nCtx) {
      throw new ContextOverflowError(`the prompt has ${this.ids.length} tokens; the context holds ${nCtx} (leave room to generate)`);
    }
    this.maxTokens = max_tokens == null || max_tokens < 0 ? nCtx : max_tokens;
    this.ignoreEos = !!ignore_eos;
    this.text = text;
    const stops = text ? stopList(stop) : [];
    this._filter = stops.length ? new StopFilter(stops) : null;
    this._decoder = text ? new TextDecoder('utf-8') : null;
    this.phase = PREFILL;
    this.pos = 0;        // prompt tokens in the session's cache
    this.nPast = 0;      // tokens in the session's cache
    this.pending = null; // the last accepted token: the next step evaluates it
    this.token = null;   // the token the last accept() took, null if it took none
    this._tPrefill = null;
    this._tDecode = null;
  }

  get done() { return this.phase === DONE; }

  /** 'stop' (end of generation or a stop string), 'length', or '' while running or if abandoned. */
  get finishReason() { return this.stats.finish_reason; }

  // ------------------------------------------------------ what to feed next
  /**
   * The session holds `cached` (its token ids): keep the longest common prefix with the
   * prompt (at least one prompt token is evaluated again, for fresh logits). Returns the
   * positions to keep; the driver truncates the session there.
   */
  reuse(cached = []) {
    const n = Math.min(commonPrefix(cached, this.ids), this.ids.length - 1);
    this.pos = this.nPast = this.stats.cached_tokens = n;
    return n;
  }

  /** The ids to evaluate next: up to maxChunk prompt tokens (null: the rest), or the one token to decode; [] when done. */
  nextIds(maxChunk = null) {
    if (this.phase === PREFILL) {
      if (this._tPrefill == null) this._tPrefill = now();
      const end = maxChunk == null ? this.ids.length : Math.min(this.ids.length, this.pos + maxChunk);
      return this.ids.slice(this.pos, end);
    }
    if (this.phase === DECODE) return [this.pending];
    return [];
  }

  /** The prompt tokens not yet evaluated. */
  get promptLeft() { return this.phase === PREFILL ? this.ids.length - this.pos : 0; }

  /**
   * The core evaluated the first n ids nextIds() gave. True when a token is to be sampled
   * now (the prompt is in, or a decode step ran).
   */
  fed(n) {
    if (this.phase === PREFILL) {
      this.pos += n;
      this.nPast = this.pos;
      if (this.pos < this.ids.length) return false;
      const t = now();
      this.stats.prompt_seconds = t - (this._tPrefill ?? t);
      this._tDecode = t;
      this.phase = DECODE;
      return true;
    }
    if (this.phase === DECODE) {
      this.nPast += n;
      return true;
    }
    return false;
  }

  // ---------------------------------------------------- what a token means
  /**
   * The core sampled `tok`: the text this adds (whole UTF-8 characters, held back while it
   * could still become a stop string; at the end, everything left). Afterwards token,
   * done and finishReason say what it was and whether it ended the generation.
   */
  accept(tok) {
    if (this.phase !== DECODE) throw new RealmError(this.done ? 'this generation has finished' : 'accept() follows fed() of the whole prompt');
    this.token = null;
    const s = this.stats;
    if (!this.ignoreEos && this.vocab.isEog(tok)) return this._finish('stop');
    if (s.generated_tokens >= this.maxTokens) return this._finish('length'); // max_tokens 0
    this.token = tok;
    s.generated_tokens++;
    s.tokens.push(tok);
    let out = '';
    if (this.text) {
      const piece = this._decoder.decode(this.vocab.piece(tok, false), { stream: true });
      out = this._filter ? this._filter.push(piece) : piece;
      if (this._filter && this._filter.hit) return out + this._finish('stop', false);
    }
    // at max_tokens, or no room left to evaluate tok: end here, without evaluating it
    if (s.generated_tokens >= this.maxTokens || this.nPast >= this.nCtx) return out + this._finish('length');
    this.pending = tok;
    return out;
  }

  _finish(reason, flush = true) {
    let tail = '';
    if (flush && this.text) {
      const rest = this._decoder.decode();
      if (this._filter) {
        tail = this._filter.push(rest);
        if (!this._filter.hit) tail += this._filter.flush();
      } else {
        tail = rest;
      }
    }
    this.stats.finish_reason = reason;
    this.close();
    return tail;
  }

  /** Stop here (done, or abandoned: finish_reason stays ''); settles the timing. Idempotent. */
  close() {
    if (this.phase !== DONE) {
      this.phase = DONE;
      if (this._tDecode != null) this.stats.generate_seconds = now() - this._tDecode;
    }
  }
}

/**
 * One unit of work on one session (session.js's Session, or webgpu.js's GpuSession,
 * whose calls return Promises): a prompt chunk of up to maxChunk ids, or one decode step
 * (Session.step: evaluate and sample in one call). Resolves to the text it adds.
 */
export async function advance(g, session, maxChunk = null) {
  if (g.done) return '';
  const ids = g.nextIds(maxChunk);
  if (g.phase === DECODE) {
    const tok = await session.step(ids[0]);
    g.fed(1);
    return g.accept(tok);
  }
  const last = ids.length >= g.promptLeft;
  await session.eval(ids);
  if (last && session.sync) await session.sync(); // GPU: the prompt's work is done, not just submitted
  return g.fed(ids.length) ? g.accept(await session.sample()) : '';
}

/**
 * One batched unit of work on several generations of one CPU model (model.js's
 * CoreModel): every generation in DECODE adds its one token, then generations in PREFILL
 * add prompt chunks (up to maxChunk each) while the step's token budget
 * (model.batchMaxTokens()) lasts; all of it is one realm_batch_step, after which every
 * generation whose prompt is in, or that decoded, samples with its own session's sampler.
 * Each session computes what it would alone (bit for bit), so this gives advance()'s
 * tokens. units: [{g, session}]. Returns, per unit, the text accept() added, or null for
 * a unit that sampled nothing this time (it waited for budget, or fed a prompt chunk
 * that is not the last). On a core error that names a session, error.unit is that
 * unit's index and nothing changed (neither the generations nor the sessions): drop it
 * and call again.
 */
export function advanceBatch(model, units, maxChunk = null) {
  let budget = model.batchMaxTokens();
  const picked = [];   // [unit index, ids, whether it samples]
  for (let i = 0; i < units.length && budget > 0; i++) {
    const g = units[i].g;
    if (g.phase === DECODE) { picked.push([i, g.nextIds(), true]); budget--; }
  }
  for (let i = 0; i < units.length && budget > 0; i++) {
    const g = units[i].g;
    if (g.phase !== PREFILL) continue;
    const ids = g.nextIds(Math.min(budget, maxChunk ?? budget));
    picked.push([i, ids, ids.length >= g.promptLeft]);
    budget -= ids.length;
  }
  const out = new Array(units.length).fill(null);
  if (!picked.length) return out;
  let next;
  try {
    next = model.stepBatch(picked.map(([i]) => units[i].session), picked.map(([, ids]) => ids), { logits: picked.map(([, , w]) => w) });
  } catch (e) {
    if (e && e.sessionIndex != null) e.unit = picked[e.sessionIndex][0];
    throw e;
  }
  picked.forEach(([i, ids], k) => {
    const g = units[i].g;
    if (g.fed(ids.length)) out[i] = g.accept(next[k]);
  });
  return out;
}

/**
 * The generation loop: runs streams [{g, session, signal, error}] to their ends, one unit
 * of work per turn, yielding to the event loop between turns. With opts.model (the CPU
 * CoreModel every session belongs to) and more than one stream running, a turn is one
 * advanceBatch over all of them; else each runs advance() in turn (one stream; GPU
 * sessions). Yields {index, token, text} as a stream produces (token: the id accept()
 * took, or null; a stream with `logprobs: true`, whose session records them, adds
 * logprobs: [[id, logprob], ...] of that token's sample, the sampled token first) and {index, done: true, finish_reason, stats, error} once per stream
 * when it ends: error is null, or what ended it alone (its own signal's abort reason, a
 * core error about its session, or the `error` it came with: a bad prompt); the others
 * go on. opts.signal (abort) and opts.check() (throws) end every stream: the iterator
 * throws. opts.maxChunk: prompt tokens per unit (EVAL_BATCH).
 */
export async function* drive(streams, { model = null, maxChunk = null, signal = null, check = null } = {}) {
  const all = streams.map((s, index) => ({ ...s, index, ended: false }));
  // a token event; with s.logprobs, the sample's log-probabilities (session.logprobs():
  // [[id, logprob], ...], the sampled token first) for each token accept() took
  const produced = (s, text) => {
    const ev = { index: s.index, token: s.g.token, text };
    if (s.logprobs && s.g.token != null) ev.logprobs = s.session.logprobs();
    return ev;
  };
  const end = (s, error = null) => {
    s.ended = true;
    if (s.g) s.g.close();
    return { index: s.index, done: true, finish_reason: s.g ? s.g.finishReason : '', stats: s.g ? s.g.stats : (s.stats || null), error };
  };
  try {
    for (const s of all) if (!s.g || s.error) yield end(s, s.error || new RealmError('no generation'));
    for (let first = true; ; first = false) {
      if (!first) {
        await yieldToEventLoop();
        throwIfAborted(signal);
        if (check) check();
      }
      for (const s of all) if (!s.ended && s.signal && s.signal.aborted) yield end(s, abortReason(s.signal));
      const live = all.filter((s) => !s.ended);
      if (!live.length) return;
      if (model && live.length > 1) {
        let outs;
        try {
          outs = advanceBatch(model, live, maxChunk);
        } catch (e) {
          if (e && e.unit != null) { yield end(live[e.unit], e); continue; }
          throw e;
        }
        for (let k = 0; k < live.length; k++) {
          const s = live[k];
          if (outs[k] !== null && (s.g.token != null || outs[k])) yield produced(s, outs[k]);
          if (s.g.done) yield end(s);
        }
      } else {
        for (const s of live) {
          let out;
          try {
            out = await advance(s.g, s.session, maxChunk);
          } catch (e) {
            yield end(s, e);
            continue;
          }
          if (s.g.token != null || out) yield produced(s, out);
          if (s.g.done) yield end(s);
        }
      }
    }
  } finally {
    for (const s of all) if (s.g) s.g.close();
  }
}

/**
 * The texts of a batch's event stream (streamBatch): one string per prompt; rejects, once
 * every prompt has ended, with the first prompt's error (error.index, error.results).
 */
export async function collectBatch(events, n) {
  const results = Array.from({ length: n }, () => ({ text: '', finish_reason: '', stats: null, error: null }));
  for await (const ev of events) {
    const r = results[ev.index];
    if (ev.done) Object.assign(r, { finish_reason: ev.finish_reason, stats: ev.stats, error: ev.error });
    else r.text += ev.text;
  }
  const bad = results.findIndex((r) => r.error);
  if (bad >= 0) {
    const e = results[bad].error;
    try { Object.assign(e, { index: bad, results }); } catch { /* a frozen or primitive abort reason */ }
    throw e;
  }
  return results.map((r) => r.text);
}
