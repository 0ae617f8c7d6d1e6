"""What a test or demo can set and see on a running emulator: faults, latency, calls.

``Faults`` holds the injected error (for the next N calls or all of them), the
added latency and the hold; ``OAuth2Faults`` adds the lifetime of the OAuth2 tokens
issued. ``CallLog`` records every call answered and counts those still being
answered. All are thread-safe: the HTTP server answers each call on its own thread.
``fault_settings`` and ``oauth2_fault_settings`` parse the JSON bodies of
``POST /_emulator/faults`` and ``POST /_emulator/oauth2/faults``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Fault:
    code: str
    remaining: int | None  # None: every call
    message: str


class Faults:
    """The injected fault and latency; each change and each ``take()`` is atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._latency = 0.0
        self._skew = 0.0
        self.gate = threading.Event()  # cleared: calls wait until it is set again
        self.gate.set()

    def fail_with(self, code: str, times: int | None, message: str) -> None:
        """Answer the next ``times`` calls (all if None) with ``code`` and ``message``."""
        if times is not None and (isinstance(times, bool) or times < 1):
            raise ValueError(f"times must be a positive integer or None, not {times!r}")
        fault = Fault(code, times, message)
        with self._lock:
            self._fault = fault

    def inject(
        self,
        code: str,
        times: int | None,
        message: str | None,
        defaults: Mapping[str, str],
        kind: str,
    ) -> None:
        """``fail_with`` for a ``code`` of ``defaults`` (code -> default message), else a
        ValueError naming the ``kind`` of code and the known ones."""
        if code not in defaults:
            raise ValueError(f"unknown {kind} {code!r}; known: {', '.join(defaults)}")
        self.fail_with(code, times, message if message is not None else defaults[code])

    def set_latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, not {seconds!r}")
        with self._lock:
            self._latency = float(seconds)

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    def set_skew(self, seconds: float) -> None:
        """Issue tokens as if the emulator's clock ran ``seconds`` behind."""
        with self._lock:
            self._skew = float(seconds)

    @property
    def skew(self) -> float:
        with self._lock:
            return self._skew

    def reset(self) -> None:
        with self._lock:
            self._fault = None
            self._latency = 0.0
            self._skew = 0.0
            self.gate.set()

    def wait_turn(self, stopping: threading.Event) -> bool:
        """Wait out the latency, then any hold; False if ``stopping`` was set meanwhile."""
        latency = self.latency
        if latency and stopping.wait(latency):
            return False
        while not self.gate.wait(0.05):  # held: answer once released
            if stopping.is_set():
                return False
        return True

    def take(self) -> Fault | None:
        """The fault to answer this call with, if any; counts the call against ``times``."""
        with self._lock:
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                left = fault.remaining - 1
                self._fault = Fault(fault.code, left, fault.message) if left > 0 else None
            return fault

    def state(self) -> dict[str, Any]:
        """The current fault and latency as JSON-ready data."""
        with self._lock:
            fault = self._fault
            return {
                "fault": None
                if fault is None
                else {"code": fault.code, "remaining": fault.remaining, "message": fault.message},
                "latency": self._latency,
            }


class OAuth2Faults(Faults):
    """``Faults`` for the OAuth2 endpoint, plus the lifetime of the tokens it issues.

    A fault's code is an OAuth2 error code or a bad-answer mode; ``reset()`` also
    restores the lifetime given at construction.
    """

    def __init__(self, lifetime: int) -> None:
        super().__init__()
        _validate_lifetime(lifetime)
        self._default_lifetime = self._lifetime = lifetime

    def set_lifetime(self, seconds: int) -> None:
        _validate_lifetime(seconds)
        with self._lock:
            self._lifetime = seconds

    @property
    def lifetime(self) -> int:
        with self._lock:
            return self._lifetime

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._lifetime = self._default_lifetime

    def state(self) -> dict[str, Any]:
        """The current fault, latency and token lifetime as JSON-ready data."""
        return {**super().state(), "lifetime": self.lifetime}


def _validate_lifetime(seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError(f"lifetime must be a positive integer of seconds, not {seconds!r}")


class CallLog(Generic[R]):
    """The record of answered calls, oldest first, and how many are being answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[R] = []
        self._in_flight = 0

    def begin(self) -> None:
        """A call arrived; ``end()`` must follow."""
        with self._lock:
            self._in_flight += 1

    def end(self, record: R) -> None:
        """A begun call is answered: no longer in flight, and recorded, in one step."""
        with self._lock:
            self._in_flight -= 1
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    @property
    def records(self) -> list[R]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight


def fault_settings(data: object) -> tuple[str | None, int | None, float | None, str | None]:
    """Parse a ``POST /_emulator/faults`` body; ValueError names the bad field."""
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    unknown = set(data) - {"code", "times", "latency", "message"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    code, times, latency, message = (data.get(k) for k in ("code", "times", "latency", "message"))
    if code is not None and not isinstance(code, str):
        raise ValueError("code must be a string or null")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
        raise ValueError("times must be an integer or null")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise ValueError("latency must be a number or null")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be a string or null")
    if code is None and (times is not None or message is not None):
        raise ValueError("times and message need a code")
    return code, times, None if latency is None else float(latency), message


def oauth2_fault_settings(
    data: object,
) -> tuple[tuple[str | None, int | None, float | None, str | None], int | None]:
    """Parse a ``POST /_emulator/oauth2/faults`` body: ``fault_settings`` and ``lifetime``."""
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    rest = dict(data)
    lifetime = rest.pop("lifetime", None)
    if lifetime is not None:
        _validate_lifetime(lifetime)
    return fault_settings(rest), lifetime
