"""Model loading: the configured GGUF files, one scheduler (ModelWorker) per file, looked up by id."""
from __future__ import annotations

import logging
import os
import threading
import time

from .config import ServerConfig
from .errors import model_not_found, unavailable
from .logs import LOGGER
from .scheduler import ModelWorker

log = logging.getLogger(LOGGER)


def default_model_id(path: str) -> str:
    """A model's id from its file name: SmolLM2-135M-Instruct.Q4_1.gguf -> SmolLM2-135M-Instruct.Q4_1."""
    name = os.path.basename(path)
    return name[:-5] if name.lower().endswith(".gguf") else name


class Models:
    """model id -> ModelWorker (several ids may share one file's worker)."""

    def __init__(self, config: ServerConfig, metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.workers: dict[str, ModelWorker] = {}
        self.loaded = False
        self.load_error: str | None = None
        self._admin = threading.Lock()   # one load/unload at a time

    def load(self) -> None:
        """Load every configured model (blocking; run off the event loop). Sets load_error on failure."""
        from ..default_model import default_model_path
        from ..default_model import resolve as resolve_model
        cfg = self.config
        try:
            specs = list(cfg.models)
            if not specs:
                p = str(default_model_path())
                specs = [(default_model_id(p), p)]
            by_file: dict[tuple, ModelWorker] = {}
            for mid, path in specs:
                path = str(resolve_model(path))   # a built-in model's name (gemma3-270m, ...)
                if mid in self.workers:
                    raise ValueError(f"model id {mid!r} is given twice")
                st = os.stat(path)
                fkey = (st.st_dev, st.st_ino)     # one worker per file, however it is spelled
                w = by_file.get(fkey)
                if w is None:
                    w = by_file[fkey] = self._worker(mid, path)
                self.workers[mid] = w
            for aid, path in cfg.lora:
                self.load_lora(aid, path)
            self.loaded = True
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("loading the models failed: %s", self.load_error)

    def load_lora(self, aid: str, path: str) -> list[str]:
        """Load an adapter onto every served model it fits (validated by the core against each);
        the ids of those models. ValueError naming each model's refusal when it fits none."""
        from ..errors import RealmError
        fits, why = [], []
        for w in self.unique():
            try:
                w.load_lora(aid, path)
                fits.append(w.id)
            except (RealmError, OSError) as e:
                why.append(f"{w.id}: {e}")
        if not fits:
            raise ValueError(f"LoRA adapter {aid!r} ({path}) fits no served model: " + "; ".join(why))
        log.info("LoRA adapter loaded", extra={"adapter": aid, "path": path, "models": fits})
        return fits

    def _worker(self, mid: str, path: str) -> ModelWorker:
        cfg = self.config
        t = time.perf_counter()
        w = ModelWorker(mid, path, n_ctx=cfg.n_ctx, max_sessions=cfg.max_sessions,
                        cache_types=(cfg.cache_type_k, cfg.cache_type_v),
                        idle_ttl=cfg.idle_ttl, metrics=self.metrics,
                        prefill_chunk=cfg.prefill_chunk, threads=cfg.threads,
                        speculative=cfg.speculative, draft_model=cfg.draft_model,
                        draft_tokens=cfg.draft_tokens, batch_tokens=cfg.batch_tokens)
        log.info("model loaded", extra={"model": mid, "path": path, "n_ctx": w.n_ctx,
                                        "max_sessions": cfg.max_sessions,
                                        "seconds": round(time.perf_counter() - t, 2)})
        return w

    def add(self, mid: str, path: str) -> ModelWorker:
        """Load one more model while serving (POST /admin/models; blocking: run off the event loop)."""
        from ..default_model import resolve as resolve_model
        from ..hub import resolve as pull_if_hub
        with self._admin:
            if mid in self.workers:
                raise ValueError(f"model id {mid!r} is already served")
            path = str(resolve_model(pull_if_hub(path)))
            if not os.path.isfile(path):
                raise ValueError(f"no such model file: {path}")
            w = self._worker(mid, path)
            self.workers = {**self.workers, mid: w}   # a new dict: readers on the event loop never see it half-built
            return w

    def remove(self, mid: str) -> None:
        """Stop serving `mid` (DELETE /admin/models/{id}): its requests are cancelled; the worker stops when
        no other id shares it (blocking)."""
        with self._admin:
            w = self.workers[mid]
            self.workers = {k: v for k, v in self.workers.items() if k != mid}
            if not any(v is w for v in self.workers.values()):
                w.cancel_all("shutdown")
                w.stop()

    def unique(self) -> list[ModelWorker]:
        seen, out = set(), []
        for w in self.workers.values():
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    def get(self, model: str) -> ModelWorker:
        """The worker of a requested model id, or the 404 (503 while loading)."""
        w = self.workers.get(model)
        if w is None:
            if not self.loaded:
                raise unavailable("the models are still loading; retry shortly (see GET /ready)")
            raise model_not_found(model, list(self.workers))
        return w

    def cancel_all(self) -> None:
        for w in self.unique():
            w.cancel_all("shutdown")

    def shutdown(self) -> None:
        for w in self.unique():
            w.stop()
        self.workers.clear()
