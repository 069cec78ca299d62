"""`realm pull REPO FILE` and `realm models list|info|rm` (the model directory: realm_web/hub.py)."""
from __future__ import annotations

import json
import sys
import time


def _fail(e) -> int:
    print(f"realm: error: {e}", file=sys.stderr)
    return 1


def cmd_pull(args) -> int:
    from . import hub
    try:
        path = hub.pull(args.repo, args.file, revision=args.revision, force=args.force)
    except hub.HubError as e:
        return _fail(e)
    m = hub.find(f"{args.repo}/{args.file}")
    print(f"{m['name']}: {m['size']:,} bytes, sha256 {m['sha256']}")
    print(path)   # alone on the last line, for scripts
    return 0


def cmd_list(args) -> int:
    from . import hub
    ms = hub.installed()
    if args.json:
        print(json.dumps(ms, indent=2))
        return 0
    if not ms:
        print(f"no models in {hub.models_dir()} (`realm pull REPO FILE` adds one)")
        return 0
    rows = [("NAME", "SIZE", "PULLED", "SHA256")]
    rows += [(m["name"] + ("" if m["present"] else " (file missing)"), f"{m['size'] / 1e6:.1f} MB",
              time.strftime("%Y-%m-%d %H:%M", time.localtime(m.get("pulled", 0))), m["sha256"][:12]) for m in ms]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    return 0


def cmd_info(args) -> int:
    from . import hub
    try:
        m = hub.find(args.name)
    except hub.HubError as e:
        return _fail(e)
    out = dict(m)
    if m["present"]:
        try:   # the GGUF header, read by gguf-py (no weights loaded)
            import gguf
            r = gguf.GGUFReader(m["path"])
            field = lambda k: (r.fields[k].contents() if k in r.fields else None)  # noqa: E731
            out.update(architecture=field("general.architecture"), model_name=field("general.name"),
                       tensors=len(r.tensors), context_length=field(f"{field('general.architecture')}.context_length"))
        except Exception as e:   # a damaged file still shows its manifest
            out["gguf_error"] = f"{type(e).__name__}: {e}"
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k + ':':16} {v}")
    return 0


def cmd_rm(args) -> int:
    from . import hub
    try:
        m = hub.remove(args.name)
    except hub.HubError as e:
        return _fail(e)
    print(f"removed {m['name']} ({m['path']})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("pull", help="download a GGUF from the Hugging Face Hub into the model directory",
                       description="Download REPO's FILE (resumable, checksum-checked) into $REALM_MODELS "
                                   "(default ~/.local/share/realm-web/models). The Hub is $HF_ENDPOINT.")
    p.add_argument("repo", help="OWNER/NAME, e.g. HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    p.add_argument("file", help="the file in the repository, e.g. smollm2-135m-instruct-q8_0.gguf")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    p.add_argument("--force", action="store_true", help="download again even if already pulled")
    p.set_defaults(fn=cmd_pull)

    m = sub.add_parser("models", help="the pulled models: list, info, rm")
    ms = m.add_subparsers(dest="models_cmd", required=True)
    ls = ms.add_parser("list", help="every pulled model")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_list)
    i = ms.add_parser("info", help="a pulled model's manifest and GGUF header")
    i.add_argument("name", help="OWNER/NAME/FILE (or FILE when unique)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)
    rm = ms.add_parser("rm", help="delete a pulled model")
    rm.add_argument("name", help="OWNER/NAME/FILE (or FILE when unique)")
    rm.set_defaults(fn=cmd_rm)
