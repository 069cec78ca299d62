"""The native Python host's answers for the JS tests (greedy ids, chat ids, tokens).

    echo '{"model": PATH, "n_ctx": 512, "cases": [...]}' | python test/py_expect.py
    (optional: "cache_type_k" / "cache_type_v": "f16" or "q8_0")

cases (each may carry "lora": [[adapter path, scale], ...], kept for later cases):
       {"kind": "generate", "prompt": str | [ids], "max_tokens": n, "stop": [...]}
       {"kind": "chat", "messages": [...], "max_tokens": n}
       {"kind": "tokenize", "text": str, "add_special": bool, "parse_special": bool}
       {"kind": "template", "messages": [...]}
Prints a JSON list, one {"ids", "text", "finish_reason"} (or {"ids"} / {"text"}) per case.
Run from anywhere: the repository root is put on sys.path.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from realm_web.realm import Realm  # noqa: E402


def main() -> None:
    req = json.load(sys.stdin)
    r = Realm.load(req.get("model"), n_ctx=req.get("n_ctx"), cache_type_k=req.get("cache_type_k", "f16"),
                   cache_type_v=req.get("cache_type_v", "f16"))
    out = []
    for c in req["cases"]:
        k = c["kind"]
        if "lora" in c:   # [[adapter path, scale], ...] for this case and the ones after it
            r.set_lora([tuple(x) for x in c["lora"]])
        if k == "generate":
            text = r.generate(c["prompt"], max_tokens=c.get("max_tokens", 32), temperature=0, stop=c.get("stop"))
            s = r.last_stats
            out.append({"ids": list(s.tokens), "text": text, "finish_reason": s.finish_reason})
        elif k == "chat":
            text = r.chat(c["messages"], max_tokens=c.get("max_tokens", 32), temperature=0)
            s = r.last_stats
            out.append({"ids": list(s.tokens), "text": text, "finish_reason": s.finish_reason,
                        "prompt_tokens": s.prompt_tokens})
        elif k == "tokenize":
            out.append({"ids": r.tokenize(c["text"], add_special=c.get("add_special", True),
                                          parse_special=c.get("parse_special", False))})
        elif k == "template":
            out.append({"text": r.apply_chat_template(c["messages"])})
        else:
            raise SystemExit(f"unknown case kind {k}")
    r.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
