"""ggml type names for messages and reports, from the one type table (core/abi.json)."""
from .abi import GGML_TYPES as _TYPES

GGML_TYPES = {tid: t["name"] for tid, t in _TYPES.items()}


def type_name(t: int) -> str:
    return GGML_TYPES.get(t, f"type{t}")
