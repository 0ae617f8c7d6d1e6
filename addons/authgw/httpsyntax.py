"""HTTP's own syntax that authgw checks text against, kept once (imports nothing of authgw)."""

from __future__ import annotations

import re

# RFC 9110 5.1/5.6.2 token characters: what a header field name may be made of (a
# config's header fields, a claim template's ${header:NAME}).
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
