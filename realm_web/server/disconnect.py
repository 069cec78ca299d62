"""Noticing that an HTTP client went away, while the server waits on something else."""
from __future__ import annotations

import asyncio


class ClientGone(Exception):
    pass


async def wait_disconnect(receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


async def settle(*tasks: asyncio.Future) -> None:
    """Await tasks that were cancelled or may still run, ignoring how they end."""
    for t in tasks:
        if not t.done():
            try:
                await t
            except BaseException:
                pass


async def unless_disconnected(coro, receive):
    """Await coro; raise ClientGone (cancelling it) if the client disconnects first."""
    task = asyncio.ensure_future(coro)
    watch = asyncio.ensure_future(wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        raise ClientGone()
    finally:
        watch.cancel()
        await settle(task, watch)
