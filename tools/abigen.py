#!/usr/bin/env python3
"""Generate every host's view of the realm.wasm ABI from core/abi.json.

    python tools/abigen.py           # write the generated files (build.py runs this)
    python tools/abigen.py --check   # exit 1 if any generated file is stale

Outputs (never edit them by hand):
  core/abi.h             prototypes of every export (so the C compiler checks each
                         definition against the description), structs, enums, constants,
                         the ggml type table as an X-macro
  realm_web/abi.py       the same as Python data (struct formats, export signatures)
  js-sdk/src/abi.js      the same as an ES module
  docs/ARCHITECTURE.md   the export tables, between the abi:begin/abi:end markers

Pointer width is a parameter (`wasm_signature(..., ptr="i32")` for a wasm32
build): only pointers change width; sizes stay 64-bit.
"""
from __future__ import annotations

import json
import pprint
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "core" / "abi.json"
OUT_H = ROOT / "core" / "abi.h"
OUT_PY = ROOT / "realm_web" / "abi.py"
OUT_JS = ROOT / "js-sdk" / "src" / "abi.js"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
DOC_BEGIN = "<!-- abi:begin (generated from core/abi.json by tools/abigen.py; edit that file) -->"
DOC_END = "<!-- abi:end -->"

SCALARS = {"uint32_t": "i32", "int32_t": "i32", "uint64_t": "i64", "int64_t": "i64", "float": "f32"}
FIELD = {  # struct field type -> (C type, Python struct char, bytes)
    "u32": ("uint32_t", "I", 4), "i32": ("int32_t", "i", 4), "u64": ("uint64_t", "Q", 8),
    "i64": ("int64_t", "q", 8), "f32": ("float", "f", 4),
}
GENERATED = "generated from core/abi.json by tools/abigen.py: do not edit"


def load(path: Path = SCHEMA) -> dict:
    return json.loads(path.read_text())


def split_param(decl: str) -> tuple[str, str]:
    """'const int32_t *ids' -> ('const int32_t *', 'ids')"""
    m = re.fullmatch(r"\s*(.*?)\s*(\w+)\s*", decl)
    if not m or not m.group(1):
        raise ValueError(f"core/abi.json: cannot read parameter {decl!r}")
    return m.group(1), m.group(2)


def wasm_type(ctype: str, ptr: str = "i64") -> str | None:
    if "*" in ctype:
        return ptr
    base = ctype.replace("const", "").strip()
    if base == "void":
        return None
    if base not in SCALARS:
        raise ValueError(f"core/abi.json: C type {ctype!r} has no wasm type (use a pointer or {sorted(SCALARS)})")
    return SCALARS[base]


def wasm_signature(export: dict, ptr: str = "i64") -> tuple[list[str], list[str]]:
    """(param wasm types, result wasm types) of one export, for a given pointer width."""
    params = [wasm_type(split_param(p)[0], ptr) for p in export["params"]]
    ret = wasm_type(export["ret"], ptr)
    return params, ([ret] if ret else [])


def struct_layout(s: dict) -> dict:
    """Offsets, the Python struct format and the size of one struct; refuses padding."""
    off, fmt, fields = 0, "<", []
    for f in s["fields"]:
        name, typ = f[0], f[1]
        ctype, ch, size = FIELD[typ]
        if off % size:
            raise ValueError(f"core/abi.json: {s['name']}.{name} would need padding (offset {off}); reorder fields")
        fields.append({"name": name, "type": typ, "offset": off, "doc": f[2] if len(f) > 2 else ""})
        fmt += ch
        off += size
    if off % 8 and any(FIELD[f[1]][2] == 8 for f in s["fields"]):
        raise ValueError(f"core/abi.json: {s['name']} ends unaligned ({off} bytes)")
    return {"name": s["name"], "c": s["c"], "doc": s["doc"], "format": fmt, "size": off, "fields": fields}


def _c_comment(text: str) -> str:
    return text.replace("*/", "* /")


def gen_c(abi: dict) -> str:
    L = [f"/* abi.h: the host ABI of realm.wasm ({GENERATED}).",
         " * Every export is declared here; a definition that differs fails to compile. */",
         "#ifndef REALM_ABI_H", "#define REALM_ABI_H", "#include <stdint.h>", "",
         f"#define REALM_ABI_VERSION {abi['version']}", ""]
    for c in abi["constants"]:
        L.append(f"#define REALM_{c['name']} {c['value']} /* {_c_comment(c['doc'])} */")
    L += ["", "/* realm_last_error_kind() */", "enum {"]
    for k in abi["error_kinds"]:
        L.append(f"    REALM_ERR_{k['name'].upper()} = {k['code']}, /* {_c_comment(k['doc'])} */")
    L += ["};", "", "/* ggml type ids (ggml.h) and block layouts (ggml-common.h) */", "enum {"]
    types = abi["ggml_types"]["types"]
    for t in types:
        note = t.get("layout") or t.get("note") or ""
        L.append(f"    GGML_TYPE_{t['name']} = {t['id']},{' /* ' + _c_comment(note) + ' */' if note else ''}")
    L.append(f"    GGML_TYPE_COUNT = {max(t['id'] for t in types) + 1}")
    L += ["};", "/* X(id, name, elements per block, bytes per block, runs here) */", "#define REALM_GGML_TYPES(X) \\"]
    L += [f"    X({t['id']}, \"{t['name']}\", {t['block']}, {t['bytes']}, {'true' if t['runs'] else 'false'}) \\"
          for t in types]
    L += ["", ""]
    for s in map(struct_layout, abi["structs"]):
        L.append(f"/* {_c_comment(s['doc'])} ({s['size']} bytes) */")
        L.append(f"typedef struct {s['c']} {{")
        for f in s["fields"]:
            doc = f" /* {_c_comment(f['doc'])} */" if f["doc"] else ""
            L.append(f"    {FIELD[f['type']][0]} {f['name']};{doc}")
        L.append(f"}} {s['c']};")
        L.append(f"_Static_assert(sizeof({s['c']}) == {s['size']}, \"{s['c']} layout\");")
        L.append("")
    L += ["typedef struct Model Model;", "typedef struct Session Session;", "typedef struct Sampler Sampler;", "typedef struct Grammar Grammar;", "typedef struct GrammarState GrammarState;", "typedef struct Lora Lora;", "",
          "#define REALM_EXPORT __attribute__((visibility(\"default\")))", ""]
    group = None
    for e in abi["exports"]:
        if e["group"] != group:
            group = e["group"]
            L.append(f"/* {next(g['title'] for g in abi['groups'] if g['name'] == group)} */")
        params = ", ".join(e["params"]) or "void"
        ret = e["ret"]
        sep = "" if ret.endswith("*") else " "
        L.append(f"REALM_EXPORT {ret}{sep}{e['name']}({params});")
    L += ["", "#endif", ""]
    return "\n".join(L)


def _data(abi: dict) -> dict:
    return {
        "version": abi["version"],
        "constants": {c["name"]: c["value"] for c in abi["constants"]},
        "error_kinds": {k["code"]: k["name"] for k in abi["error_kinds"]},
        "sampling_defaults": {k: v for k, v in abi["sampling_defaults"].items() if not k.startswith("//")},
        "grammars": {k: v for k, v in abi["grammars"].items() if not k.startswith("//")},
        "structs": {s["name"]: s for s in map(struct_layout, abi["structs"])},
        "ggml_types": {t["id"]: {"name": t["name"], "block": t["block"], "bytes": t["bytes"], "runs": t["runs"]}
                       for t in abi["ggml_types"]["types"]},
        "exports": {e["name"]: {"params": [split_param(p)[1] for p in e["params"]],
                                "ctypes": [split_param(p)[0] for p in e["params"]], "ret": e["ret"]}
                    for e in abi["exports"]},
    }


def gen_py(abi: dict) -> str:
    d = _data(abi)
    structs = {n: {"format": s["format"], "size": s["size"], "fields": tuple(f["name"] for f in s["fields"])}
               for n, s in d["structs"].items()}
    exports = {n: (tuple(e["ctypes"]), e["ret"]) for n, e in d["exports"].items()}

    def r(v):
        return pprint.pformat(v, width=110, sort_dicts=False)
    py_names = "\n".join(f'{k} = CONSTANTS["{k}"]' for k in d["constants"])
    return f'''"""The host ABI of realm.wasm as data ({GENERATED}).

STRUCTS: name -> struct format, size, field names; EXPORTS: name -> (C parameter
types, C result type); pointer params are wasm64 i64 here (wasm_signature)."""
import struct as _struct

ABI_VERSION = {d["version"]}
CONSTANTS = {r(d["constants"])}
{py_names}
ERROR_KINDS = {r(d["error_kinds"])}
ERR = {{v: k for k, v in ERROR_KINDS.items()}}
SAMPLING_DEFAULTS = {r(d["sampling_defaults"])}
GRAMMARS = {r(d["grammars"])}
GGML_TYPES = {r(d["ggml_types"])}
STRUCTS = {r(structs)}
EXPORTS = {r(exports)}
_SCALARS = {r(SCALARS)}


def pack(name, values):
    """Bytes of struct `name` from a dict (or an object with those attributes)."""
    s = STRUCTS[name]
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k)
    return _struct.pack(s["format"], *(get(f) for f in s["fields"]))


def unpack(name, data):
    """dict of struct `name` read from bytes."""
    s = STRUCTS[name]
    return dict(zip(s["fields"], _struct.unpack(s["format"], bytes(data[:s["size"]]))))


def wasm_type(ctype, ptr="i64"):
    if "*" in ctype:
        return ptr
    base = ctype.replace("const", "").strip()
    return None if base == "void" else _SCALARS[base]


def wasm_signature(name, ptr="i64"):
    """(param wasm types, result wasm types) of an export."""
    params, ret = EXPORTS[name]
    r = wasm_type(ret, ptr)
    return [wasm_type(p, ptr) for p in params], ([r] if r else [])
'''


def gen_js(abi: dict) -> str:
    d = _data(abi)
    structs = {n: {"size": s["size"], "fields": [[f["name"], f["type"], f["offset"]] for f in s["fields"]]}
               for n, s in d["structs"].items()}
    exports = {n: [[wasm_type(c, "ptr") for c in e["ctypes"]], wasm_type(e["ret"], "ptr")]
               for n, e in d["exports"].items()}
    j = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    js_names = "\n".join(f"export const {k} = CONSTANTS.{k};" for k in d["constants"])
    return f"""// The host ABI of realm.wasm as data ({GENERATED}).
// STRUCTS: name -> size and [field, type, offset]; EXPORTS: name -> [param types, result type], with
// 'ptr' for pointers (i64 in the Memory64 build, i32 in a wasm32 one) and null for no result.

export const ABI_VERSION = {d["version"]};
export const CONSTANTS = Object.freeze({j(d["constants"])});
{js_names}
export const ERROR_KINDS = Object.freeze({j({str(k): v for k, v in d["error_kinds"].items()})});
export const SAMPLING_DEFAULTS = Object.freeze({j(d["sampling_defaults"])});
export const GRAMMARS = Object.freeze({j(d["grammars"])});
export const GGML_TYPES = Object.freeze({j({str(k): v for k, v in d["ggml_types"].items()})});
export const STRUCTS = Object.freeze({j(structs)});
export const EXPORTS = Object.freeze({j(exports)});

const GET = {{ u32: 'getUint32', i32: 'getInt32', f32: 'getFloat32', u64: 'getBigUint64', i64: 'getBigInt64' }};
const SET = {{ u32: 'setUint32', i32: 'setInt32', f32: 'setFloat32', u64: 'setBigUint64', i64: 'setBigInt64' }};

/** Read struct `name` from a DataView (64-bit fields as Numbers when safe, else BigInt). */
export function readStruct(name, dv, base = 0) {{
  const out = {{}};
  for (const [f, t, off] of STRUCTS[name].fields) {{
    let v = dv[GET[t]](base + off, true);
    if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) v = Number(v);
    out[f] = v;
  }}
  return out;
}}

/** Bytes of struct `name` from an object (missing fields are 0). */
export function packStruct(name, values) {{
  const s = STRUCTS[name];
  const b = new Uint8Array(s.size);
  const dv = new DataView(b.buffer);
  for (const [f, t, off] of s.fields) {{
    const v = values[f] ?? 0;
    dv[SET[t]](off, t.endsWith('64') ? BigInt.asUintN(64, BigInt(v)) : v, true);
  }}
  return b;
}}
"""


def gen_doc_section(abi: dict) -> str:
    L = [DOC_BEGIN, "", f"ABI version **{abi['version']}** (`realm_abi_version()`); every host refuses another.", ""]
    L += ["#### Imports", "", "| import | kind | builds | meaning |", "|---|---|---|---|"]
    L += [f"| `{i['module']}.{i['name']}` | {i['kind']} | {', '.join(i['builds']) or 'none'} | {i['doc']} |"
          for i in abi["imports"]]
    L += ["", "#### Error kinds (`realm_last_error_kind()`)", "", "| code | kind | meaning |", "|---|---|---|"]
    L += [f"| {k['code']} | `{k['name']}` | {k['doc']} |" for k in abi["error_kinds"]]
    L += ["", "#### Constants", "", "| name | value | meaning |", "|---|---|---|"]
    L += [f"| `{c['name']}` | {c['value']} | {c['doc']} |" for c in abi["constants"]]
    L += ["", "#### Structs (little-endian, no padding)", ""]
    for s in map(struct_layout, abi["structs"]):
        L.append(f"**{s['name']}** (`{s['c']}`, {s['size']} bytes): {s['doc']}.")
        L.append("")
        L.append("| offset | field | type | note |")
        L.append("|---|---|---|---|")
        L += [f"| {f['offset']} | `{f['name']}` | {f['type']} | {f['doc']} |" for f in s["fields"]]
        L.append("")
    for g in abi["groups"]:
        L += [f"#### Exports: {g['title']} (`{g['source']}`)", "", "| export | signature (wasm64) | units / ownership |",
              "|---|---|---|"]
        for e in abi["exports"]:
            if e["group"] != g["name"]:
                continue
            ps, rs = wasm_signature(e)
            names = [split_param(p)[1] for p in e["params"]]
            sig = "(" + ", ".join(f"{n}: {t}" for n, t in zip(names, ps)) + ")" + (f" -> {rs[0]}" if rs else "")
            L.append(f"| `{e['name']}` | `{sig}` | {e['doc']} |")
        for gl in abi.get("globals", []):
            if gl["group"] == g["name"]:
                L.append(f"| `{gl['name']}` | global {gl['type']} ({', '.join(gl['builds'])} builds) | {gl['doc']} |")
        L.append("")
    L.append(DOC_END)
    return "\n".join(L)


def gen_doc(abi: dict, current: str) -> str:
    section = gen_doc_section(abi)
    if DOC_BEGIN in current and DOC_END in current:
        a = current.index(DOC_BEGIN)
        b = current.index(DOC_END) + len(DOC_END)
        return current[:a] + section + current[b:]
    raise SystemExit(f"abigen: {DOC} has no {DOC_BEGIN!r} ... {DOC_END!r} markers")


def outputs(abi: dict) -> dict[Path, str]:
    return {OUT_H: gen_c(abi), OUT_PY: gen_py(abi), OUT_JS: gen_js(abi), DOC: gen_doc(abi, DOC.read_text())}


def main(argv: list[str]) -> int:
    abi = load()
    stale = []
    for path, text in outputs(abi).items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if "--check" not in argv:
                path.write_text(text)
    if "--check" in argv and stale:
        print("abigen: stale (run python tools/abigen.py): " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
