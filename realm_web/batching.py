"""Continuous batching in Python: which rows go into the next forward pass, and running it.

Used by the server's scheduler (server/scheduler.py) and `Realm.generate_batch`. Every step packs the decoding streams (one token each) and prompt
chunks of the streams still prefilling into one core call (realm_batch_step),
within a token budget (`--batch-tokens`, at most the core's
realm_batch_max_tokens). Decode rows go first: a stream that is generating
never waits behind someone's long prompt, and prompts fill what is left, a
chunk each. Within each kind the order interleaves tenants (one row of every
tenant before a second row of any), so a tenant with many streams cannot
starve one with few when the budget is short; the caller rotates served jobs
to the back of its queue (served_last), so those left out go first next step.

plan_step is a pure function over Want tuples; step_rows runs one planned step
of realm_web.generation state machines in one core call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

from .generation import DECODE, Generation

J = TypeVar("J")


@dataclass(frozen=True)
class Want:
    """What one stream would put in the next step: `decode` (one token) or up to `prompt` tokens."""
    job: object
    tenant: Hashable
    decode: bool
    prompt: int = 0     # prompt tokens left (prefill only)


def interleave_by_tenant(items: Sequence[J], tenant: Callable[[J], Hashable]) -> list[J]:
    """items reordered round-robin over tenants (first-seen tenant first), each tenant's items
    kept in their order: a b a a c b -> a b c a b a."""
    queues: dict[Hashable, list[J]] = {}
    for it in items:
        queues.setdefault(tenant(it), []).append(it)
    out: list[J] = []
    lists = list(queues.values())
    i = 0
    while len(out) < len(items):
        for q in lists:
            if i < len(q):
                out.append(q[i])
        i += 1
    return out


def plan_step(wants: Iterable[Want], budget: int, chunk: int) -> list[tuple[object, int]]:
    """The rows of one step as (job, tokens): decode rows (1 token) first, then prompt chunks
    (at most `chunk` tokens, at most what is left of `budget`), each kind interleaved by tenant.
    At least one row when there is any want and budget >= 1."""
    wants = list(wants)
    budget, chunk = max(1, int(budget)), max(1, int(chunk))
    rows: list[tuple[object, int]] = []
    left = budget
    for w in interleave_by_tenant([w for w in wants if w.decode], lambda w: w.tenant):
        if left < 1:
            break
        rows.append((w.job, 1))
        left -= 1
    for w in interleave_by_tenant([w for w in wants if not w.decode and w.prompt > 0], lambda w: w.tenant):
        if left < 1:
            break
        n = min(chunk, w.prompt, left)
        rows.append((w.job, n))
        left -= n
    return rows


def served_last(items: Sequence[J], served: Iterable[J], key: Callable[[J], Hashable] = id) -> list[J]:
    """items with those served this step moved to the end, each group in its order: a stream
    left out of a step (more streams than the budget) goes first in the next."""
    done = {key(x) for x in served}
    return [x for x in items if key(x) not in done] + [x for x in items if key(x) in done]


def step_rows(model, rows: Sequence[tuple[Generation, object, int]]) -> list[str]:
    """One forward pass for rows (gen, session, n): each generation feeds its next n ids (a
    prompt chunk, or its one decode token) on its session, all in one `model.step_batch`
    call, and takes the token its session sampled when it has one. Returns each row's new
    text. On a RealmError (`.session_index` names the row, or None) nothing changed."""
    chunks = [gen.next_ids(n) for gen, _, n in rows]
    sample = [gen.phase == DECODE or gen.pos + len(ch) >= len(gen.ids) for (gen, _, _), ch in zip(rows, chunks)]
    out = model.step_batch([s for _, s, _ in rows], chunks, sample)
    return [gen.accept(tok) if gen.fed(len(ch)) else "" for (gen, _, _), ch, tok in zip(rows, chunks, out)]
