"""Secrets read from where they are kept: a command, AWS Secrets Manager, SSM.

A ``RemoteSecret`` holds the last value it read and re-reads it in a thread of its own
every ``refresh`` seconds (a timer; sooner after a failure; at once when an upstream
rejects a token made from it), so ``read()`` never blocks the event loop. A failed re-read keeps
the last good value and says so (the log, ``status()``); until a first read succeeds,
``read()`` raises ``MissingSecret`` and the route answers 502 ``missing_secret``.
``SecretStore`` hands out one ``RemoteSecret`` per reference, so a reload that keeps a
reference keeps its value instead of reading it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from authgw.config import SecretRef
from authgw.errors import AuthgwError
from authgw.sources.base import SecretReader
from authgw.tokens import MissingSecret, fingerprint

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 5.0  # seconds: a failed read is tried again this soon (or at refresh)


class ReadFailed(AuthgwError):
    """A secret could not be read; the message says why, never with the secret."""


def run_command(
    command: str,
    timeout: float,
    track: Callable[[subprocess.Popen[bytes] | None], None] | None = None,
) -> bytes:
    """``/bin/sh -c command``'s stdout, one trailing newline dropped; ``ReadFailed`` if it
    cannot run, times out, exits non-zero or prints nothing. ``track`` is told the
    process while it runs, and None once it has ended (``Command.close``)."""
    try:
        # A session of its own, so a timeout ends the whole command, not only the shell.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise ReadFailed(f"cannot run /bin/sh: {e.strerror}") from None
    if track is not None:
        track(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        raise ReadFailed(f"command did not finish within {timeout:g} s") from None
    finally:
        if track is not None:
            track(None)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if done.returncode != 0:
        # stderr names the failure (permission denied, not found); stdout may hold the secret.
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        said = f": {_printable(lines[-1])}" if lines else ""
        raise ReadFailed(f"command exited with status {done.returncode}{said}")
    out = done.stdout
    out = out[:-2] if out.endswith(b"\r\n") else out.removesuffix(b"\n")
    if not out:
        raise ReadFailed("command printed nothing")
    return out


def _printable(text: str, limit: int = 200) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The command's whole session (it has one of its own), not only the shell."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Command:
    """A ``cmd:`` secret's read; ``close`` ends a run under way (the secret's route was
    dropped, or the gateway stops), so no command outlives its owner."""

    def __init__(self, ref: SecretRef) -> None:
        self.ref = ref
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    def __call__(self) -> bytes:
        return run_command(self.ref.name, self.ref.timeout, self._track)

    def _track(self, proc: subprocess.Popen[bytes] | None) -> None:
        with self._lock:
            self._proc = proc
            if proc is not None and self._closed:
                _kill(proc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._proc is not None and self._proc.returncode is None:
                _kill(self._proc)


def fetcher(ref: SecretRef) -> Callable[[], bytes]:
    """The blocking read for a remote reference (boto3 is imported only for AWS ones)."""
    if ref.kind == "cmd":
        return Command(ref)
    from authgw.sources import aws_secrets

    return aws_secrets.fetcher(ref)


class RemoteSecret:
    """The last value read from ``ref``; re-read in the background, never on the caller."""

    def __init__(
        self,
        ref: SecretRef,
        fetch: Callable[[], bytes],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ref = ref
        self._fetch = fetch
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._current: tuple[bytes, str] | None = None  # (value, fingerprint): one snapshot
        self._read_at: float | None = None  # wall time of the last good read
        self._error: str | None = None
        self._due = float("-inf")
        self._running: threading.Event | None = None
        self._timer: threading.Timer | None = None
        self._asked_at = float("-inf")  # the last refresh_soon that started a read
        self._closed = False

    def start(self, wait: float) -> None:
        """Start the first read and wait up to ``wait`` seconds for it."""
        done = self._refresh_now()
        if done is not None:
            done.wait(wait)

    def snapshot(self) -> tuple[bytes, str]:
        """The last good value and its fingerprint, read as one (a re-read may swap them
        at any moment); starts a re-read when one is due. ``MissingSecret`` until a first
        read succeeded."""
        if self._monotonic() >= self._due:
            self._refresh_now()
        current = self._current
        if current is None:
            why = self._error or "not read yet"
            raise MissingSecret(f"{self.ref.describe()} has no value ({why})")
        return current

    def read(self) -> bytes:
        return self.snapshot()[0]

    def fingerprint(self) -> str:
        return self.snapshot()[1]

    def fingerprint_or_none(self) -> str | None:
        try:
            return self.fingerprint()
        except MissingSecret:
            return None

    def refresh_soon(self) -> None:
        """Read again now (an upstream rejected a token made from this value); at most
        once per RETRY_AFTER_FAILURE seconds, however many 401s come."""
        with self._lock:
            now = self._monotonic()
            if now - self._asked_at < RETRY_AFTER_FAILURE:
                return
            self._asked_at = now
        self._refresh_now()

    def wait(self, timeout: float) -> bool:
        """Wait for a read in progress to end (tests, and the CLI); True if none is left."""
        with self._lock:
            running = self._running
        return running is None or running.wait(timeout)

    def status(self) -> dict[str, Any]:
        """The value's age and the last error, for /status."""
        with self._lock:
            age = None if self._read_at is None else round(self._wall() - self._read_at, 1)
            return {"value_age": age, "last_error": self._error, "refresh": self.ref.refresh}

    def close(self) -> None:
        """Start no read and arm no timer from now on; a read under way ends silently (a
        command is killed). (Its owner's runtime is gone: nothing may log through a
        closed event loop.)"""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        stop = getattr(self._fetch, "close", None)
        if stop is not None:
            stop()  # a command under way is ended (its process group)

    def _refresh_now(self) -> threading.Event | None:
        with self._lock:
            if self._closed:
                return None
            if self._running is not None:
                return self._running
            self._running = threading.Event()
            self._due = self._monotonic() + self.ref.refresh  # set again when it ends
            running = self._running
        # A daemon thread per read (one per secret at a time): an exiting interpreter does
        # not wait for a command or AWS to answer.
        threading.Thread(
            target=self._refresh, args=(running,), name="authgw-secret-read", daemon=True
        ).start()
        return running

    def _refresh(self, running: threading.Event) -> None:
        try:
            value = self._fetch()
            error = None
        except ReadFailed as e:
            value, error = None, str(e)
        except Exception as e:  # noqa: BLE001 - a bug or an SDK error: kept, reported
            value, error = None, f"read failed ({type(e).__name__})"
        with self._lock:
            now = self._monotonic()
            delay = (
                self.ref.refresh
                if value is not None
                else min(self.ref.refresh, RETRY_AFTER_FAILURE)
            )
            before, failing = self._current, self._error is not None
            if value is not None:
                changed = before is not None and value != before[0]
                self._current = (value, fingerprint(value))
                self._read_at, self._error = self._wall(), None
                self._due = now + self.ref.refresh
            else:
                self._error = error
                self._due = now + min(self.ref.refresh, RETRY_AFTER_FAILURE)
                changed = False
            current = self._current
            self._running = None
            closed = self._closed
        if closed:
            running.set()
            return
        fp = None if current is None else current[1]
        if value is not None and changed:
            logger.info("authgw: %s changed (now %s)", self.ref.describe(), fp)
        elif value is not None and failing:  # the log said it failed: say it works now
            logger.warning("authgw: %s: read again (%s)", self.ref.describe(), fp)
        elif value is None and current is not None:
            logger.warning(
                "authgw: %s: re-read failed (%s); keeping the value read before (%s)",
                self.ref.describe(),
                error,
                fp,
            )
        elif value is None:
            logger.warning("authgw: %s: read failed (%s)", self.ref.describe(), error)
        running.set()
        # Read again when due, so requests find the new value rather than start the read.
        # One timer per secret: a read started early (a 401) replaces the pending one.
        timer = threading.Timer(delay, self._refresh_now)
        timer.daemon, timer.name = True, "authgw-secret-timer"
        with self._lock:
            if self._closed:
                return
            previous, self._timer = self._timer, timer
        if previous is not None:
            previous.cancel()
        timer.start()


Reader = SecretReader | RemoteSecret


class SecretStore:
    """One reader per reference: env/file/literal as before, remote ones shared."""

    def __init__(self, *, first_read_wait: float | None = None) -> None:
        self._remote: dict[SecretRef, RemoteSecret] = {}
        self._lock = threading.Lock()
        self._wait = first_read_wait

    def reader(self, ref: SecretRef) -> Reader:
        if not ref.remote:
            return SecretReader(ref)
        wait = ref.timeout + 1 if self._wait is None else self._wait
        with self._lock:
            secret = self._remote.get(ref)
            new = secret is None
            if secret is None:
                secret = self._remote[ref] = RemoteSecret(ref, fetcher(ref))
        if new:
            secret.start(wait)
        elif secret.fingerprint_or_none() is None:
            secret.wait(wait)  # another build started its first read: wait for it as well
        return secret

    def retain(self, refs: set[SecretRef]) -> None:
        """Close and forget every secret not in ``refs`` (a reload dropped its route):
        its timer is cancelled and its command or AWS call never runs again."""
        with self._lock:
            gone = [ref for ref in self._remote if ref not in refs]
            closing = [self._remote.pop(ref) for ref in gone]
        for secret in closing:
            secret.close()

    def close(self) -> None:
        """Close every secret read so far (``RemoteSecret.close``) and forget them."""
        self.retain(set())

    def count(self) -> int:
        """How many remote secrets are being read (tests, the soak bench)."""
        return len(self._remote)
