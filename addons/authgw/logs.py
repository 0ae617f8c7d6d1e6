"""How the gateway logs what goes wrong: an unexpected error's name at ERROR and its
traceback only at DEBUG (``internal_error``); a recurring warning once a minute per key
(``WarnEveryMinute``).

mitmproxy sets the root logger to DEBUG and filters in its handler by
``termlog_verbosity``, so ``logger.isEnabledFor(DEBUG)`` is true in every mitmdump: a
traceback attached to the ERROR line would always print, and an exception's text or
source lines may hold request data. The traceback goes in a DEBUG record of its own,
which the handler shows only at ``termlog_verbosity=debug``.
"""

from __future__ import annotations

import logging
import time

_WARN_EVERY = 60.0  # seconds between warnings for one key; debug in between


def internal_error(logger: logging.Logger, message: str, *args: object) -> None:
    """``message`` at ERROR; the exception being handled, with its traceback, at DEBUG."""
    logger.error(message, *args)
    logger.debug("authgw: the traceback of that error", exc_info=True)


class WarnEveryMinute:
    """A warning once a minute per key (route, what), debug in between: a failing route
    under load says so without flooding the log."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._warned_at: dict[tuple[str, str], float] = {}

    def __call__(self, key: tuple[str, str], message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned_at[key] = now
            self._logger.warning(message, *args)
        else:
            self._logger.debug(message, *args)
