// Stop strings over streamed text: a line-for-line port of realm_web/stops.py (the
// Python API and `realm serve` use that one). tests/stop_cases.json holds cases both
// test suites run (tests/test_stops.py, js-sdk/test/unit.test.mjs).
//
// Lengths here are UTF-16 code units, Python's are code points; on well-formed text
// (what a TextDecoder produces) the two give the same strings: a prefix of a stop that
// ends inside a surrogate pair can never be a suffix of well-formed text.

/**
 * Streams text while holding back any tail that could still become a stop string;
 * at the earliest match of any stop string, ends the text there (hit = true).
 */
export class StopFilter {
  constructor(stops) {
    this.stops = Array.from(stops || []).filter((s) => s);
    this.buf = '';
    this.hit = false;
  }

  /** The text that can be emitted now, given `text` more. */
  push(text) {
    if (!this.stops.length) return text;
    this.buf += text;
    let first = -1;
    for (const s of this.stops) {
      const i = this.buf.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      this.hit = true;
      const out = this.buf.slice(0, first);
      this.buf = '';
      return out;
    }
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.buf.length); k > 0; k--) {
        if (this.buf.endsWith(s.slice(0, k))) {
          keep = Math.max(keep, k);
          break;
        }
      }
    }
    const out = this.buf.slice(0, this.buf.length - keep);
    this.buf = this.buf.slice(this.buf.length - keep);
    return out;
  }

  /** What is still held back (the text has ended without a match). */
  flush() {
    const out = this.buf;
    this.buf = '';
    return out;
  }
}

/** A `stop` option (a string, a list, or nothing) as a list. */
export function stopList(stop) {
  if (stop == null) return [];
  return typeof stop === 'string' ? [stop] : Array.from(stop);
}
