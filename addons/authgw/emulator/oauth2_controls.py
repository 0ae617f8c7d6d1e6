"""The OAuth2 test controls of :class:`~authgw.emulator.server.StsEmulator`.

``OAuth2Controls`` is the base of ``StsEmulator`` that holds what a test may set and
see on its OAuth2 token endpoint: an injected error code or bad answer, latency, the
hold, the token lifetime, and the call record. Each is thread-safe.
"""

from __future__ import annotations

from typing import Any

from authgw.emulator.controls import CallLog, OAuth2Faults
from authgw.emulator.oauth2 import OAUTH2_ANSWERS, OAUTH2_ERRORS
from authgw.emulator.oauth2_request import OAuth2CallRecord

_DESCRIPTIONS = {code: error.description for code, error in OAUTH2_ERRORS.items()}


class OAuth2Controls:
    """Faults, latency, hold, token lifetime and call record of the OAuth2 endpoint."""

    def __init__(self, lifetime: int) -> None:
        self._oauth2_faults = OAuth2Faults(lifetime)
        self._oauth2_calls: CallLog[OAuth2CallRecord] = CallLog()

    # -- what the endpoint answers ---------------------------------------------------------

    def oauth2_fail_with(
        self, code: str, times: int | None = None, message: str | None = None
    ) -> None:
        """Answer the next ``times`` token requests (all if None) with OAuth2 error ``code``.

        ``code`` must be a key of OAUTH2_ERRORS; ``message`` is the ``error_description``.
        """
        self._oauth2_faults.inject(code, times, message, _DESCRIPTIONS, "OAuth2 error code")

    def oauth2_answer_with(self, mode: str, times: int | None = None) -> None:
        """Spoil the next ``times`` good token answers (all if None) as ``mode`` says.

        ``mode`` is a key of OAUTH2_ANSWERS. It replaces an injected error code, and an
        error code replaces it: one fault at a time, as for STS. A call that is refused
        anyway answers its error, and counts against ``times`` all the same.
        """
        self._oauth2_faults.inject(mode, times, None, OAUTH2_ANSWERS, "bad-answer mode")

    def set_oauth2_lifetime(self, seconds: int) -> None:
        """Issue OAuth2 tokens for ``seconds`` (``expires_in`` and ``exp``); default 300."""
        self._oauth2_faults.set_lifetime(seconds)

    def oauth2_faults_state(self) -> dict[str, Any]:
        """OAuth2's current fault, latency and token lifetime as JSON-ready data."""
        return self._oauth2_faults.state()

    def oauth2_reset(self) -> None:
        """Clear OAuth2's injected fault, latency and hold, and restore its lifetime."""
        self._oauth2_faults.reset()

    # -- when it answers -------------------------------------------------------------------

    def set_oauth2_latency(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each token request."""
        self._oauth2_faults.set_latency(seconds)

    def oauth2_hold(self) -> None:
        """Hold every token answer until ``oauth2_release()``; ``oauth2_in_flight`` counts
        the calls waiting."""
        self._oauth2_faults.gate.clear()

    def oauth2_release(self) -> None:
        self._oauth2_faults.gate.set()

    @property
    def oauth2_in_flight(self) -> int:
        """Token requests being answered right now (e.g. held)."""
        return self._oauth2_calls.in_flight

    # -- what it was asked -------------------------------------------------------------------

    @property
    def oauth2_calls(self) -> list[OAuth2CallRecord]:
        """A snapshot of the recorded token requests, oldest first."""
        return self._oauth2_calls.records

    @property
    def oauth2_call_count(self) -> int:
        return len(self._oauth2_calls)

    def clear_oauth2_calls(self) -> None:
        self._oauth2_calls.clear()
