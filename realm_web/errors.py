"""Exceptions that the Python host raises. Every failure inside realm.wasm
(a bad GGUF, a prompt past the context, a trap) reaches the caller as one of
these, with the core's own message naming the problem."""


class RealmError(Exception):
    """Base class of every error realm_web raises."""


class ModelFormatError(RealmError):
    """The file is not a GGUF this core can read (truncated, bad magic, hostile sizes)."""


class UnsupportedModelError(RealmError):
    """The GGUF is well formed but uses an architecture or tensor type the core cannot run."""


class ContextOverflowError(RealmError):
    """The prompt (or prompt plus generation) does not fit in the session's context."""
