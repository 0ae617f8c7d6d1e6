"""Blocking work run off the event loop in a thread of its own, which ends with it.

Not the loop's default pool: its threads outlive the work (so thread counts after many
reloads would not come back to a fresh start's), and mitmproxy resolves upstream names
on it. The result is a future on the loop; if the awaiting side gave up (the future is
cancelled), the work's result goes to ``abandoned`` on the loop instead, so what the
work started can be stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")


def run_in_thread(
    work: Callable[[], T], *, name: str, abandoned: Callable[[T | None], None]
) -> asyncio.Future[T]:
    """``work()`` in a new daemon thread called ``name``; its result or error, on the
    running loop. ``abandoned(result)`` (None if it raised) runs on the loop instead when
    the future was cancelled first."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            abandoned(result)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as e:  # noqa: BLE001 - handed to whoever awaits the future
            error = e
        with contextlib.suppress(RuntimeError):  # the loop is closed: mitmproxy exited
            loop.call_soon_threadsafe(deliver, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
