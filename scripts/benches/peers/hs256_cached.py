"""The addon a user writes instead of authgw: an HS256 JWT per host, kept in a dict."""

import os
import time

import jwt
from mitmproxy import http

SECRET = os.environ["BENCH_SECRET"]
LIFETIME = 3600
_cache: dict[str, tuple[str, float]] = {}


def request(flow: http.HTTPFlow) -> None:
    host = flow.request.pretty_host
    token, exp = _cache.get(host, ("", 0.0))
    now = time.time()
    if exp - now < 60:
        exp = now + LIFETIME
        claims = {"stackmon": "dummy", "iat": int(now), "exp": int(exp)}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        _cache[host] = (token, exp)
    flow.request.headers["Authorization"] = f"Bearer {token}"
