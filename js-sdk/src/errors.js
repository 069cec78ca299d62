// The SDK's error classes (the JS twins of realm_web/errors.py). Every module that
// throws imports them from here; core.js and index.js re-export them.

export class RealmError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'RealmError';
  }
}
/** The file is not a GGUF this core can read (truncated, bad magic, hostile sizes). */
export class ModelFormatError extends RealmError {
  constructor(m, o) { super(m, o); this.name = 'ModelFormatError'; }
}
/** A well-formed GGUF with an architecture, tensor type or tokenizer the core cannot run. */
export class UnsupportedModelError extends RealmError {
  constructor(m, o) { super(m, o); this.name = 'UnsupportedModelError'; }
}
/** The prompt (or prompt plus generation) does not fit in the session's context. */
export class ContextOverflowError extends RealmError {
  constructor(m, o) { super(m, o); this.name = 'ContextOverflowError'; }
}
/** The core's memory could not grow (a model or context too large for this engine). */
export class OutOfMemoryError extends RealmError {
  constructor(m, o) { super(m, o); this.name = 'OutOfMemoryError'; }
}
