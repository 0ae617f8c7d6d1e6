"""HTTP's own syntax and framing that authgw checks against, kept once (imports nothing
of authgw)."""

from __future__ import annotations

import re

from mitmproxy import http
from mitmproxy.net.http.http1 import expected_http_body_size

# RFC 9110 5.1/5.6.2 token characters: what a header field name may be made of (a
# config's header fields, a claim template's ${header:NAME}).
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def may_stream(request: http.Request, response: http.Response | None, streaming: bool) -> bool:
    """True if, with ``stream_large_bodies`` on (``streaming``), mitmproxy may start
    streaming the body of ``response`` (else of ``request``) once it has read some,
    without a hook before: a body whose size its headers do not give (chunked; HTTP/2
    and 3 without Content-Length)."""
    if not streaming:
        return False
    message: http.Message = response if response is not None else request
    if message.http_version.startswith(("HTTP/2", "HTTP/3")):
        return "content-length" not in message.headers
    try:
        size = expected_http_body_size(request, response)
    except ValueError:
        return True
    return size is None or size < 0
