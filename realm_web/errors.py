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


class OutOfMemoryError(RealmError, MemoryError):
    """The core's linear memory could not grow (a model or context too large for it)."""


# realm_last_error_kind() (core/abi.json's error_kinds) -> the class a host raises
_BY_KIND = {
    "format": ModelFormatError,
    "unsupported": UnsupportedModelError,
    "context_full": ContextOverflowError,
    "out_of_memory": OutOfMemoryError,
}


def core_error(core, context: str = "") -> RealmError:
    """The core's last failure as the exception its kind maps to; `context`
    (a path, an operation) goes before the core's own message."""
    from .abi import ERROR_KINDS
    msg = core.last_error() or "unknown error"
    kind = ERROR_KINDS.get(core.call("realm_last_error_kind"), "invalid_argument")
    return _BY_KIND.get(kind, RealmError)(f"{context}: {msg}" if context else msg)


def check_abi(core, where) -> None:
    """Refuse a module built from another ABI description than this host's."""
    from .abi import ABI_VERSION
    try:
        got = core.call("realm_abi_version")
    except RealmError:
        got = None
    if got != ABI_VERSION:
        raise RealmError(f"{where} speaks realm ABI {got}; this host speaks {ABI_VERSION} "
                         f"(rebuild it with `python build.py`)")
