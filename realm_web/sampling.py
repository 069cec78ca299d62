"""Sampling defaults, one table per meaning, and the one mapping of an
OpenAI-shaped request onto the core's sampler.

LLAMA_CPP is what `realm run` and the `Realm` Python API default to (llama.cpp's
own defaults); OPENAI is what every OpenAI-shaped API defaults to (the server's
chat/completions and completions, the JS SDK's `chat.completions.create`):
OpenAI has no top-k or min-p, so they are off there. Nothing else in Python
holds a copy of these numbers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from . import abi

# the tables are core/abi.json's (the JS SDK reads the same ones)
LLAMA_CPP = MappingProxyType(dict(abi.SAMPLING_DEFAULTS["llama_cpp"]))
OPENAI = MappingProxyType(dict(abi.SAMPLING_DEFAULTS["openai"]))

KNOBS = tuple(LLAMA_CPP)   # the sampler's settings, by name, in both tables
assert set(OPENAI) == set(KNOBS)


@dataclass
class SamplerSettings:
    """The core's SamplerParams (core/abi.json); defaults: LLAMA_CPP."""
    temperature: float = LLAMA_CPP["temperature"]
    top_k: int = LLAMA_CPP["top_k"]
    top_p: float = LLAMA_CPP["top_p"]
    min_p: float = LLAMA_CPP["min_p"]
    repeat_penalty: float = LLAMA_CPP["repeat_penalty"]
    repeat_last_n: int = LLAMA_CPP["repeat_last_n"]
    frequency_penalty: float = LLAMA_CPP["frequency_penalty"]
    presence_penalty: float = LLAMA_CPP["presence_penalty"]
    seed: int = 0xFFFFFFFF

    @classmethod
    def of(cls, table: Mapping, seed: int | None = None, **given) -> "SamplerSettings":
        """`table`'s defaults, overridden by the settings given (None = the table's); seed: see resolve_seed."""
        vals = {k: type(table[k])(given[k] if given.get(k) is not None else table[k]) for k in KNOBS}
        unknown = set(given) - set(KNOBS)
        if unknown:
            raise TypeError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
        return cls(**vals, seed=resolve_seed(seed))

    def pack(self) -> bytes:
        """SamplerParams as the core reads it (core/abi.json)."""
        return abi.pack("SamplerParams", {
            "temperature": self.temperature, "top_p": self.top_p, "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty, "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty, "top_k": int(self.top_k),
            "repeat_last_n": int(self.repeat_last_n), "seed": int(self.seed) & 0xFFFFFFFFFFFFFFFF})


def resolve_seed(seed: int | None) -> int:
    """A seed for the core's RNG: the one given, or (None or negative) one from the clock."""
    return time.time_ns() if seed is None or seed < 0 else int(seed)


@dataclass
class GenerationOptions:
    """What a generation does besides sampling (realm_web.generation reads it)."""
    max_tokens: int | None = None   # None or negative: until end of generation or a full context
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False


def stop_list(stop) -> list[str]:
    """A stop string or strings as a list, empty strings dropped."""
    return [s for s in ([stop] if isinstance(stop, str) else list(stop or [])) if s]


def from_openai(body: Mapping, max_tokens_key: str = "max_tokens",
                default_max_tokens: int | None = None) -> tuple[SamplerSettings, GenerationOptions]:
    """An OpenAI chat or completions request body -> the sampler's settings and the generation's options.

    Reads temperature, top_p, frequency_penalty, presence_penalty, seed, stop,
    `max_tokens_key` (max_completion_tokens for chat; max_tokens when it is absent)
    and llama.cpp's extensions top_k, min_p, repeat_penalty, repeat_last_n;
    absent or null fields take OPENAI's defaults. Types and ranges are the
    caller's to check (the server's schemas.py does, with OpenAI's messages)."""
    settings = SamplerSettings.of(OPENAI, seed=body.get("seed"), **{k: body.get(k) for k in KNOBS})
    key = max_tokens_key if body.get(max_tokens_key) is not None else "max_tokens"
    mt = body.get(key)
    return settings, GenerationOptions(max_tokens=default_max_tokens if mt is None else int(mt),
                                       stop=stop_list(body.get("stop")))
