"""Logging an unexpected error: its name at ERROR, its traceback only at DEBUG.

mitmproxy sets the root logger to DEBUG and filters in its handler by
``termlog_verbosity``, so ``logger.isEnabledFor(DEBUG)`` is true in every mitmdump: a
traceback attached to the ERROR line would always print, and an exception's text or
source lines may hold request data. The traceback goes in a DEBUG record of its own,
which the handler shows only at ``termlog_verbosity=debug``.
"""

from __future__ import annotations

import logging


def internal_error(logger: logging.Logger, message: str, *args: object) -> None:
    """``message`` at ERROR; the exception being handled, with its traceback, at DEBUG."""
    logger.error(message, *args)
    logger.debug("authgw: the traceback of that error", exc_info=True)
