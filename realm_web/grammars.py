"""Grammars the hosts ship (GBNF, llama.cpp's syntax, run by the core: core/grammar.c),
from core/abi.json's "grammars" (the JS SDK reads the same ones from js-sdk/src/abi.js).

JSON: any JSON object (what OpenAI's `response_format: {"type": "json_object"}` asks for),
the language of llama.cpp's grammars/json.gbnf: a value is an object, array, string, number
or literal; whitespace only where JSON allows it, and bounded (a newline and at most 20
spaces or tabs at a time), so a constrained model cannot pad forever.
"""
from __future__ import annotations

from .abi import GRAMMARS

JSON = GRAMMARS["json"]
