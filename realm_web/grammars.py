"""Grammars the hosts ship (GBNF, llama.cpp's syntax, run by the core: core/grammar.c).

JSON: any JSON object (what OpenAI's `response_format: {"type": "json_object"}` asks for),
the language of llama.cpp's grammars/json.gbnf: a value is an object, array, string, number
or literal; whitespace only where JSON allows it, and bounded (a newline and at most 20
spaces or tabs at a time), so a constrained model cannot pad forever.
"""
from __future__ import annotations

JSON = r'''
root    ::= object
value   ::= object | array | string | number | ("true" | "false" | "null") ws
object  ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array   ::= "[" ws ( value ("," ws value)* )? "]" ws
string  ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number  ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws      ::= | " " | "\n" [ \t]{0,20}
'''
