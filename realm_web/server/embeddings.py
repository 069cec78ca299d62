"""POST /v1/embeddings (and its WebSocket form): inputs -> a scheduler Job -> OpenAI's list of embeddings."""
from __future__ import annotations

from typing import Any

from . import encoding
from .auth import Auth, reserve
from .context import Ctx
from .errors import bad_request, unavailable
from .scheduler import Job
from .schemas import PARSERS, EmbeddingRequest


async def embed(srv, ctx: Ctx, auth: Auth, body: dict) -> dict:
    req: EmbeddingRequest = PARSERS["embeddings"](body)
    worker = srv.models.get(req.model)
    ctx.model = worker.id
    if req.dimensions is not None and req.dimensions != worker.n_embd:
        raise bad_request(f"Invalid 'dimensions': this model's embeddings have {worker.n_embd} dimensions "
                          f"(got {req.dimensions}).", param="dimensions")
    reservation = await srv.offload(reserve, srv.limiter, srv.metrics, auth, 0)
    job = Job("embed", auth.tenant, "embeddings", inputs=req.inputs, param="input", t_arrival=ctx.t0)
    vecs: dict[int, Any] = {}
    try:
        worker.submit(job)
        while True:
            ev = await job.events.get()
            if ev[0] == "accepted":
                ctx.prompt_tokens = ev[1]
            elif ev[0] == "embedding":
                vecs[ev[1]] = ev[2]
            elif ev[0] == "done":
                usage = ev[2]
                break
            elif ev[0] == "error":
                raise ev[1]
            elif ev[0] == "cancelled":
                raise unavailable("the request was cancelled")
    finally:
        if not job.done:
            job.cancel("client")
        reservation.settle(0)
    data = [{"object": "embedding", "index": i, "embedding": encoding.embedding(vecs[i], req.encoding_format)}
            for i in range(len(req.inputs))]
    srv.metrics.prompt_tokens.labels(auth.tenant, worker.id).inc(usage["prompt_tokens"])
    return {"object": "list", "data": data, "model": worker.id, "usage": usage}
