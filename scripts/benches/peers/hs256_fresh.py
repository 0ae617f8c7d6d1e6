"""The addon a user writes instead of authgw, without a cache: a fresh HS256 JWT per request."""

import os
import time

import jwt
from mitmproxy import http

SECRET = os.environ["BENCH_SECRET"]
LIFETIME = 3600


def request(flow: http.HTTPFlow) -> None:
    now = int(time.time())
    claims = {"stackmon": "dummy", "iat": now, "exp": now + LIFETIME}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    flow.request.headers["Authorization"] = f"Bearer {token}"
