"""The config file watcher: polls the file's content digest and hands each change on.

Owned by ``runtime.RuntimeManager``, which stops it with the runtime. It survives
anything: an unreadable or vanished file reads as "no content", and an error in the
reload it starts is logged and the watch goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from authgw.logs import internal_error

logger = logging.getLogger(__name__)


def config_stamp(path: Path) -> bytes | None:
    """The config file's content digest: mtimes can tie when a file is rewritten quickly."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


class ConfigWatcher:
    """Calls ``changed()`` once per change of a file's content, one call at a time."""

    def __init__(self, changed: Callable[[], Awaitable[object]], interval: float) -> None:
        self._changed = changed
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def watching(self) -> bool:
        return self._task is not None

    def start(self, path: Path, stamp: bytes | None) -> None:
        """Watch ``path`` from content ``stamp`` (taken before the file was read, so a
        change while it was read is seen); without an event loop yet, the caller starts
        it again once one runs."""
        self.stop()
        try:
            self._task = asyncio.get_running_loop().create_task(self._watch(path, stamp))
        except RuntimeError:
            self._task = None

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self, path: Path, stamp: bytes | None) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                now = config_stamp(path)
                if now != stamp:
                    stamp = now
                    await self._changed()
            except Exception:  # noqa: BLE001 - the watcher must outlive any bug
                internal_error(logger, "authgw: reloading %s failed; still watching it", path)
