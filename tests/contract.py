"""What ../shared/DESIGN.md promises users, written out once for the tests to hold us to."""

from __future__ import annotations

# "Flow log record": every record has exactly these fields; the last two are the verify
# routes' verdict (docs/decisions.md).
FLOWLOG_FIELDS = frozenset(
    {
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
    }
)
