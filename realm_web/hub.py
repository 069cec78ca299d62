"""Models on demand: GGUF files pulled from the Hugging Face Hub into a local model directory.

    realm pull REPO FILE          realm models list | info NAME | rm NAME
    realm serve --model hf:REPO/FILE   (pulls on first use, then uses the local copy)

The download is huggingface_hub's (progress bar, resumes an interrupted
download, size check); we add a SHA-256 check against the Hub's LFS etag and
a manifest next to each file (repo, file, commit, sha256, size, time), which
`list`/`info` read without the network. The Hub is $HF_ENDPOINT
(default https://huggingface.co; huggingface_hub reads it at import).

Layout: <models dir>/<owner>--<name>/<file> and <file>.json, where the models
dir is $REALM_MODELS, else <user data dir>/realm-web/models.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubError(Exception):
    """A pull failed or a model is unknown (the message says which and why)."""


def models_dir() -> Path:
    env = os.environ.get("REALM_MODELS")
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "realm-web" / "models"


def _check(repo: str, filename: str) -> None:
    if not _REPO.match(repo or ""):
        raise HubError(f"'{repo}' is not a Hub repository id (owner/name)")
    parts = Path(filename).parts
    if not filename or Path(filename).is_absolute() or ".." in parts:
        raise HubError(f"'{filename}' is not a file path inside a repository")


def local_path(repo: str, filename: str) -> Path:
    return models_dir() / repo.replace("/", "--") / filename


def _manifest(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pull(repo: str, filename: str, revision: str | None = None, force: bool = False) -> Path:
    """Download (or resume) repo/filename into the model directory; returns the local path.
    An already pulled file is kept unless force."""
    _check(repo, filename)
    dest = local_path(repo, filename)
    if dest.exists() and _manifest(dest).exists() and not force:
        return dest
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
    except ImportError:
        raise HubError("pulling models needs huggingface_hub:  pip install huggingface_hub") from None
    try:
        meta = get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision))
        got = Path(hf_hub_download(repo, filename, revision=revision, local_dir=models_dir() / repo.replace("/", "--"), force_download=force))
    except RepositoryNotFoundError:
        raise HubError(f"no repository '{repo}' on the Hub (or it is private)") from None
    except EntryNotFoundError:
        raise HubError(f"no file '{filename}' in '{repo}'" + (f" at revision {revision}" if revision else "")) from None
    except HfHubHTTPError as e:
        raise HubError(f"the Hub refused {repo}/{filename}: {e}") from None
    except OSError as e:   # connection refused, DNS, disk full
        raise HubError(f"could not download {repo}/{filename}: {e}") from None
    digest = sha256_file(got)
    if meta.etag and _SHA256.match(meta.etag) and digest != meta.etag:
        got.unlink()
        raise HubError(f"checksum mismatch for {repo}/{filename}: the Hub says sha256 {meta.etag}, the download has "
                       f"{digest}; the file was removed, pull again")
    _manifest(got).write_text(json.dumps({"repo": repo, "file": filename, "revision": revision or "main",
                                          "commit": meta.commit_hash, "sha256": digest, "size": got.stat().st_size,
                                          "pulled": time.time()}, indent=2))
    return got


def installed() -> list[dict]:
    """Every pulled model's manifest, plus its `name` (REPO/FILE) and `path`."""
    root = models_dir()
    out = []
    if not root.is_dir():
        return out
    for m in sorted(root.rglob("*.json")):
        if ".cache" in m.parts:
            continue
        try:
            d = json.loads(m.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not {"repo", "file", "sha256"} <= set(d):
            continue
        path = m.with_name(m.name[:-len(".json")])
        d.update(name=f"{d['repo']}/{d['file']}", path=str(path), present=path.exists())
        out.append(d)
    return out


def find(name: str) -> dict:
    """The manifest of REPO/FILE (or a unique FILE name)."""
    ms = installed()
    hits = [m for m in ms if m["name"] == name] or [m for m in ms if m["file"] == name]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise HubError(f"no pulled model '{name}' in {models_dir()} (`realm models list` shows them)")
    raise HubError(f"'{name}' is ambiguous: " + ", ".join(m["name"] for m in hits))


def remove(name: str) -> dict:
    m = find(name)
    path = Path(m["path"])
    path.unlink(missing_ok=True)
    _manifest(path).unlink(missing_ok=True)
    repo_dir = models_dir() / m["repo"].replace("/", "--")
    if repo_dir.is_dir() and not any(p for p in repo_dir.rglob("*") if p.is_file() and ".cache" not in p.parts):
        shutil.rmtree(repo_dir, ignore_errors=True)   # nothing left but huggingface_hub's download metadata
    return m


def resolve(spec: str) -> str:
    """'hf:OWNER/NAME/FILE' -> the local path, pulling it on first use; anything else is returned as is."""
    if not spec.startswith("hf:"):
        return spec
    parts = spec[3:].split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise HubError(f"'{spec}': write hf:OWNER/NAME/FILE (e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/x.gguf)")
    return str(pull(parts[0] + "/" + parts[1], parts[2]))
