"""One JSON object per flow (JSON Lines), for debugging header rewriting.

A record holds the fields of DESIGN.md and nothing else: header *names* that were
set or removed, never their values; the path without its query string (queries
carry tokens often enough that we do not log them); the token's kid and expiry,
never the token.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

FIELDS = (
    "ts",
    "client",
    "method",
    "scheme",
    "host",
    "port",
    "path",
    "route",
    "action",
    "token_source",
    "kid",
    "audience",
    "token_expires_in",
    "headers_set",
    "headers_removed",
    "status",
    "error_class",
    "token_ms",
    "upstream_ms",
    "verify",
    "verify_detail",
    "retried",
)


@dataclass
class FlowRecord:
    """What the gateway decided for one flow; filled in by the hooks as it goes."""

    route: str | None = None
    action: str = "passthrough"
    token_source: str | None = None
    kid: str | None = None
    audience: tuple[str, ...] = ()
    token_expires_in: float | None = None
    headers_set: list[str] = field(default_factory=list)
    headers_removed: list[str] = field(default_factory=list)
    error_class: str | None = None
    token_ms: float | None = None
    sent_at: float | None = None
    verify: str | None = None  # a verify route's verdict: valid, expired, bad_signature, ...
    verify_detail: str | None = None
    retried: bool = False  # resent once after an upstream 401 (retry_on_401)


def make_line(
    record: FlowRecord,
    *,
    ts: float,
    client: str,
    method: str,
    scheme: str,
    host: str,
    port: int,
    path: str,
    status: int | None,
    upstream_ms: float | None,
) -> str:
    obj: dict[str, Any] = {
        "ts": datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
        "client": client,
        "method": method,
        "scheme": scheme,
        "host": host,
        "port": port,
        "path": path.split("?", 1)[0],
        "route": record.route,
        "action": record.action,
        "token_source": record.token_source,
        "kid": record.kid,
        "audience": list(record.audience) or None,
        "token_expires_in": None
        if record.token_expires_in is None
        else round(record.token_expires_in, 1),
        "headers_set": record.headers_set,
        "headers_removed": record.headers_removed,
        "status": status,
        "error_class": record.error_class,
        "token_ms": None if record.token_ms is None else round(record.token_ms, 3),
        "upstream_ms": None if upstream_ms is None else round(upstream_ms, 3),
        "verify": record.verify,
        "verify_detail": record.verify_detail,
        "retried": record.retried,
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


class FlowLog:
    """An append-only JSON Lines file, line-buffered so ``tail -f`` shows each flow.

    It follows rotation as logging's ``WatchedFileHandler`` does: before each record the
    path is stat-ed, and when the file there is not the one open (logrotate moved or
    removed it) the path is opened anew. The check costs about 2 us per record
    (docs/benchmarks.md, "Flow log"); a request through mitmdump costs about 1 ms. A
    write or reopen that fails drops records (logged once) and is tried again
    ``RETRY_AFTER`` seconds later: a rotation that left a file it cannot open does not
    end the flow log for good.
    """

    RETRY_AFTER = 5.0

    def __init__(self, path: Path, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._monotonic = monotonic
        self._file: IO[str] | None = None
        self._identity: tuple[int, int] | None = None
        self._retry_at: float | None = None  # set while failing
        self._closed = False
        self._open()  # at configure time, so an unwritable path stops mitmdump at start

    def _open(self) -> None:
        file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        st = os.fstat(file.fileno())
        self._file, self._identity = file, (st.st_dev, st.st_ino)

    def _follow(self) -> None:
        """Reopen the path if the file there is no longer the open one."""
        try:
            st = os.stat(self.path)
            if self._file is not None and (st.st_dev, st.st_ino) == self._identity:
                return
        except FileNotFoundError:
            pass
        self._drop_file()
        self._open()

    def write(self, line: str) -> None:
        if self._closed:
            return
        if self._retry_at is not None and self._monotonic() < self._retry_at:
            return  # failing: records are dropped until the next try
        try:
            self._follow()
            assert self._file is not None
            self._file.write(line + "\n")
        except OSError as e:
            self._drop_file()
            if self._retry_at is None:
                logger.error(
                    "flow log %s: write failed (%s); records are dropped until it works "
                    "again (tried every %g s)",
                    self.path,
                    e.strerror,
                    self.RETRY_AFTER,
                )
            self._retry_at = self._monotonic() + self.RETRY_AFTER
            return
        if self._retry_at is not None:
            self._retry_at = None
            logger.warning("flow log %s: writing again", self.path)

    def _drop_file(self) -> None:
        old, self._file, self._identity = self._file, None, None
        if old is not None:
            try:
                old.close()
            except OSError:
                pass  # a buffered line that cannot be written: already reported

    def close(self) -> None:
        self._closed = True
        self._drop_file()
