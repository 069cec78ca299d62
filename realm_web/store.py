"""Host-side model storage: one loaded copy of each GGUF file per process.

Every `Realm`, registry and server tenant that opens the same model gets the
same `CoreModel` (and so the same weights in memory); each adds only its own
session. Models are identified by their source's identity (for files: device,
inode, size and mtime, so a path reached through a symlink or another spelling
still shares the copy, and a file rewritten in place is loaded afresh).
Refcounted: the last release frees.
"""
from __future__ import annotations

import threading

from .core_model import CoreModel
from .sources import as_source

_lock = threading.Lock()
_models: dict[tuple, list] = {}  # key -> [CoreModel, refcount]


def acquire(source, vocab_only: bool = False, threads: int | None = None) -> CoreModel:
    """The process's CoreModel for this source (a path or a source object), loading it on first use.

    A vocab-only request is served by a fully loaded model if there is one.
    threads (when given) sets how many threads the model runs on, for every
    user of it: the weights and the worker pool are both per model."""
    source = as_source(source)
    base = source.identity
    with _lock:
        for vo in ((False, True) if vocab_only else (False,)):
            entry = _models.get(base + (vo,))
            if entry:
                entry[1] += 1
                if threads is not None and not vo:
                    entry[0].set_threads(threads)
                return entry[0]
        # Loading happens under the lock so two threads never load one file twice.
        model = CoreModel(source, vocab_only=vocab_only, threads=threads)
        _models[base + (vocab_only,)] = [model, 1]
        return model


def release(model: CoreModel) -> None:
    """Drop one reference; the model is freed when the last user lets go."""
    with _lock:
        for key, entry in list(_models.items()):
            if entry[0] is model:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _models[key]
                    model.close()
                return


def loaded() -> list[tuple[str, int]]:
    """(path, refcount) of every model currently held."""
    with _lock:
        return [(str(m.path), n) for m, n in _models.values()]
