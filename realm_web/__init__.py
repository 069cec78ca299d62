"""Realm Web: LLaMA-family GGUF models on one Memory64 realm.wasm core.

    from realm_web import Realm
    r = Realm.load()                     # the built-in default model
    r.generate("The capital of France is", max_tokens=16, temperature=0)
"""
from .errors import ContextOverflowError, ModelFormatError, RealmError, UnsupportedModelError

__all__ = ["Realm", "RealmError", "ModelFormatError", "UnsupportedModelError", "ContextOverflowError"]
__version__ = "0.1.0"


def __getattr__(name):
    # Realm pulls in numpy and wasmtime: import it on first use only
    if name == "Realm":
        from .realm import Realm
        return Realm
    raise AttributeError(name)
