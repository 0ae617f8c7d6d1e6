"""sigv4: what signing costs. In one process, ``signing.sign`` on a flow (botocore's
canonical request, the body's SHA-256, the HMAC chain) for 1 KB and 1 MB bodies; and
mitmdump's CPU per request for PUTs of those bodies, without the gateway and with a
sigv4 route, measured in turns."""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from benches.common import (
    Row,
    Upstream,
    child_env,
    cpu_per_request,
    exchange,
    gateway_args,
    mitmdump,
    upstream,
)
from mitmproxy.test import tflow, tutils

from authgw import signing
from authgw.config import SigV4TokenConfig
from authgw.flowlog import FlowRecord
from authgw.flowstate import FlowState
from authgw.sources.sigv4 import SigV4Signer

AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHMARK00000",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-access-key-0123456789abcdef",
    "AWS_SESSION_TOKEN": "bench-session-token",
    "AWS_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/authgw-bench",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/authgw-bench",
}
SIZES = {"1 KB": 1024, "1 MB": 1 << 20}


class _BodyUpstream(Upstream):
    """Reads a PUT's body and answers 200."""

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()


@contextmanager
def _aws_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in AWS}
    os.environ.update(AWS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sign_us(signer: SigV4Signer, size: int, calls: int) -> float:
    """Microseconds per ``signing.sign`` (the flows are made before the clock starts)."""
    body = b"b" * size
    creds = signer.credentials()
    flows = [
        tflow.tflow(req=tutils.treq(host="api.bench", port=443, path=b"/x?b=2&a=1", content=body))
        for _ in range(calls)
    ]
    states = [FlowState(FlowRecord(), sigv4=creds) for _ in range(calls)]
    started = time.perf_counter()
    for flow, state in zip(flows, states, strict=True):
        signing.sign(signer, flow, state, body_known=True)
    return (time.perf_counter() - started) / calls * 1e6


def _put(proxy_port: int, *, url: str, body: bytes, requests: int) -> None:
    exchange(proxy_port, itertools.repeat(("PUT", url, {}, body), requests))


def bench_sigv4(rounds: int) -> list[Row]:
    rows: list[Row] = []
    with _aws_env():
        signer = SigV4Signer("bench", SigV4TokenConfig(service="execute-api"))
        for label, size in SIZES.items():
            calls = 2000 if size < 100_000 else 60
            _sign_us(signer, size, 20)  # warm up
            us = statistics.median(_sign_us(signer, size, calls) for _ in range(rounds))
            rows.append(
                (
                    f"sigv4 signing per request, {label} body (in process)",
                    f"{us:.0f} us",
                    f"signing.sign on a flow: canonical query, botocore SigV4Auth, body "
                    f"SHA-256 (median of {rounds} x {calls})",
                )
            )
    with upstream(_BodyUpstream) as port, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(
            textwrap.dedent(f"""\
            version: 1
            routes:
              - name: aws
                hosts: ["127.0.0.1:{port}"]
                token: {{type: sigv4, service: execute-api}}
            """)
        )
        env = child_env(AWS)
        variants = {"plain mitmdump": [], "gateway, sigv4 route": gateway_args(config)}
        procs = {name: mitmdump(args, env, tmp) for name, args in variants.items()}
        url = f"http://127.0.0.1:{port}/put"
        try:
            for label, size in SIZES.items():
                body = b"b" * size
                requests = 500 if size < 100_000 else 40
                for proc in procs.values():
                    _put(proc.port, url=url, body=body, requests=20)  # warm up
                costs = cpu_per_request(
                    procs, partial(_put, url=url, body=body, requests=requests), requests, rounds
                )
                plain = costs["plain mitmdump"]
                for name, cost in costs.items():
                    rows.append(
                        (
                            f"mitmdump CPU/request, PUT {label}, {name}",
                            f"{cost * 1e6:.0f} us",
                            f"x{cost / plain:.2f} of plain (median of {rounds} turns x {requests})",
                        )
                    )
        finally:
            for proc in procs.values():
                proc.stop()
    return rows
