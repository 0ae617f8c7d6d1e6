"""Run mitmdump as a child process: start it, wait for its port, read its output, stop it.

    Mitmdump(argv, env=..., cwd=...)    one process, not started yet
      .start(timeout)                   spawn, wait until it listens (LaunchError if not)
      .run_to_exit(timeout)             spawn, wait until it exits on its own: the exit code
      .stop()                           SIGTERM, wait, SIGKILL; idempotent
      .port .ports .lines .output .wait_for_output(pattern)
    MITMDUMP                            argv of mitmdump in this Python
    LOOPBACK_ANY_PORT                   mitmdump options: 127.0.0.1, a port the OS picks

A thread reads the output (stdout and stderr, interleaved) into a list as it comes, so
neither a silent nor a chatty mitmdump can block the caller, and every wait has a deadline.
Used by the demo, the benchmarks and the end-to-end harness (tests/e2e/harness.py).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

MITMDUMP = (sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()")
LOOPBACK_ANY_PORT = ("--listen-host", "127.0.0.1", "--listen-port", "0")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ERROR_TAIL = 60  # output lines a LaunchError shows by default

T = TypeVar("T")
_LISTENING = re.compile(r"listening at .*:(\d+)\.")


class LaunchError(RuntimeError):
    """mitmdump exited or missed a deadline; the message ends with its (last) output lines."""


def listening_port(line: str) -> list[int] | None:
    """[PORT] for mitmdump's "... listening at HOST:PORT." line; None for any other line."""
    match = _LISTENING.search(line)
    return [int(match.group(1))] if match else None


class Mitmdump:
    """One mitmdump process started with `argv` (e.g. `[*MITMDUMP, *options]`).

    `env` None inherits this process's environment. Every output line goes to
    `log_path` (appended) and `on_line` (called on the reader thread) if given.
    A LaunchError shows the last `error_tail` output lines, or all of them if None.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        error_tail: int | None = ERROR_TAIL,
    ) -> None:
        self.argv = list(argv)
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.on_line = on_line
        self.error_tail = error_tail
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._eof = False
        self._ports: list[int] = []

    # lifecycle

    def start(
        self,
        timeout: float = START_TIMEOUT,
        *,
        ready: Callable[[str], list[int] | None] = listening_port,
    ) -> Mitmdump:
        """Spawn mitmdump and wait until an output line gives its ports via `ready`.

        `ready` maps a line to the listening ports, or None for a line that is not the one.
        Stops mitmdump and raises LaunchError if it exits first, `timeout` passes, or
        `ready` finds no port.
        """
        self._spawn()
        ports = self._first(ready, timeout)
        if ports is None:
            exited = self._eof
            self.stop()
            raise self._error(
                "mitmdump exited during start-up"
                if exited
                else f"mitmdump did not start within {timeout:g}s"
            )
        if not ports:
            self.stop()
            raise self._error("mitmdump started without a listening address")
        self._ports = list(ports)
        return self

    def run_to_exit(self, timeout: float = START_TIMEOUT) -> int:
        """Spawn mitmdump and wait for it to exit on its own; return its exit code.

        Kills it and raises LaunchError if it still runs after `timeout`.
        """
        proc = self._spawn()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise self._error(f"mitmdump did not exit within {timeout:g}s") from None
        self.stop()  # joins the reader: the output is complete
        return proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for mitmdump to exit (subprocess.TimeoutExpired after `timeout`)."""
        if self._proc is None:
            raise RuntimeError("mitmdump not started")
        return self._proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; join the reader. Idempotent.

        Returns the exit code (None if mitmdump never started).
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> Mitmdump:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # state

    @property
    def port(self) -> int:
        """The first port mitmdump listens on."""
        if not self._ports:
            raise RuntimeError("mitmdump not started")
        return self._ports[0]

    @property
    def ports(self) -> list[int]:
        """Every port `start()` found (one per --mode with the harness's `ready`)."""
        return list(self._ports)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("mitmdump not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """None while mitmdump runs (or before it started)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def lines(self) -> list[str]:
        """Every output line so far, without line endings."""
        with self._cond:
            return list(self._lines)

    @property
    def output(self) -> str:
        """Everything mitmdump printed so far (stdout and stderr, interleaved)."""
        with self._cond:
            return "\n".join(self._lines)

    def wait_for_output(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait for an output line matching regex `pattern` (searched); return the match.

        Raises TimeoutError, with the output, if mitmdump exits or `timeout` passes first.
        """
        regex = re.compile(pattern)
        match = self._first(regex.search, timeout)
        if match is None:
            why = "mitmdump exited" if self._eof else f"waited {timeout:g}s"
            raise TimeoutError(
                f"no output line matching {pattern!r} ({why})\n{self._output_section()}"
            )
        return match

    # internals

    def _spawn(self) -> subprocess.Popen[str]:
        if self._proc is not None:
            raise RuntimeError("mitmdump already started")
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
            cwd=self.cwd,
        )
        self._proc = proc
        self._reader = threading.Thread(
            target=self._read, args=(proc,), name=f"mitmdump-{proc.pid}", daemon=True
        )
        self._reader.start()
        return proc

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        try:
            with contextlib.ExitStack() as stack:
                log: IO[str] | None = None
                if self.log_path is not None:
                    log = stack.enter_context(self.log_path.open("a", encoding="utf-8"))
                for raw in proc.stdout:
                    if log is not None:
                        log.write(raw)
                        log.flush()
                    line = raw.rstrip("\r\n")
                    with self._cond:
                        self._lines.append(line)
                        self._cond.notify_all()
                    if self.on_line is not None:
                        self.on_line(line)
        except (OSError, ValueError):
            pass  # stop() closed the pipe under us: nothing left to read
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _first(self, match: Callable[[str], T | None], timeout: float) -> T | None:
        """The first non-None `match(line)` over the output, waiting for new lines.

        None once the output ended (mitmdump exited) or `timeout` passed.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    found = match(line)
                    if found is not None:
                        return found
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    return None
                self._cond.wait(min(remaining, 0.1))

    def _output_section(self) -> str:
        with self._cond:
            lines = list(self._lines)
        if self.error_tail is None or len(lines) <= self.error_tail:
            return "--- output ---\n" + "\n".join(lines)
        tail = lines[-self.error_tail :]
        return f"--- last {len(tail)} of {len(lines)} output lines ---\n" + "\n".join(tail)

    def _error(self, reason: str) -> LaunchError:
        return LaunchError(
            f"{reason} (exit code {self.returncode})\n"
            f"command: {self.argv}\n{self._output_section()}"
        )
