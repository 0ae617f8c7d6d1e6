"""A user's requests and a hostile client's, through a real mitmdump with the gateway.

    python scripts/tour.py

Loopback only, no AWS account. Three routes: ``debug`` (hmac, ``sub`` from the
``X-Debug-User`` header), ``aws`` (sigv4 to the emulator's SigV4 echo, which checks the
signature with botocore) and ``rotating`` (hmac, secret from a command, ``retry_on_401``,
in front of an upstream that accepts only its current key). It prints what the upstreams
received (and what an upstream that echoes the request hands back: the token scrubbed),
then each attack and its answer, then whether any secret or token shows in the ``-w``
file, mitmdump's output or the flow log. It stops everything it started.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from launcher import LOOPBACK_ANY_PORT, Mitmdump
from mitmproxy import io

from authgw.cli import mitmdump_argv
from authgw.emulator import StsEmulator
from authgw.emulator.sigv4 import SigV4Credential

KEY, AWS_SECRET, SESSION = "AKIDTOUR00000001", "tour-aws-secret-key-0123456789", "tour-session"
HMAC = "tour-hmac-secret-0123456789abcdef0123"
ROTATED = "tour-rotated-secret-0123456789abcdef!"


class Recorder(BaseHTTPRequestHandler):
    """Records each request with the claims of its HS256 token; with `strict`, answers 401
    to a token its current `secret` did not sign."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []
    secret = HMAC
    strict = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, type(self).secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            claims = None
        status = 401 if type(self).strict and claims is None else 200
        Recorder.seen.append(
            {
                "path": self.path,
                "headers": dict(self.headers),
                "claims": claims,
                "body": body,
                "status": status,
            }
        )
        echo = b""
        if self.path.startswith("/echo"):  # httpbin-style: the request's token, as received
            echo = json.dumps({"authorization": self.headers.get("Authorization")}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(echo)))
        self.end_headers()
        self.wfile.write(echo)

    do_GET = do_POST = do_PUT = _serve


class Holder(Recorder):
    strict = True


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def curl(proxy: int, *args: str) -> str:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-x", f"http://127.0.0.1:{proxy}", "-o", "-"]
        + ["-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, _, code = done.stdout.rpartition("\n")
    return f"{code} {(body or done.stderr).strip()[:100]}"


def raw(proxy: int, data: bytes) -> str:
    """`data` on a plain connection to the proxy: the first line of what came back."""
    with socket.create_connection(("127.0.0.1", proxy), timeout=5) as sock:
        sock.sendall(data)
        sock.settimeout(3)
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    head, _, body = got.partition(b"\r\n\r\n")
    line = head.split(b"\r\n")[0].decode(errors="replace") or "(closed)"
    return f"{line} {body.decode(errors='replace').strip()[:80]}".strip()


def config(tmp: Path, debug: int, aws: str, rotating: int, secret_file: Path) -> Path:
    kept = {"cmd": f"cat {shlex.quote(str(secret_file))}", "refresh": 300}
    claims = {"sub": "${header:X-Debug-User}", "method": "${method}"}
    routes = [
        {
            "name": "debug",
            "hosts": [f"127.0.0.1:{debug}"],
            "token": {"type": "hmac", "secret": {"env": "TOUR_HMAC"}, "lifetime": 300}
            | {"claims": claims},
        },
        {"name": "aws", "hosts": [aws], "token": {"type": "sigv4", "service": "execute-api"}},
        {
            "name": "rotating",
            "hosts": [f"127.0.0.1:{rotating}"],
            "retry_on_401": True,
            "token": {"type": "hmac", "secret": kept, "lifetime": 300},
        },
    ]
    path = tmp / "gateway.yaml"
    doc = {"version": 1, "unmatched": "reject", "flowlog": str(tmp / "flows.jsonl")}
    path.write_text(json.dumps({**doc, "routes": routes}))
    return path


def environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("AWS_")
    }
    return env | {
        "TOUR_HMAC": HMAC,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": SESSION,
        "AWS_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/authgw-tour",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/authgw-tour",
    }


def tour(proxy: int, emu: StsEmulator, debug: int, rotating: int, secret_file: Path) -> None:
    seen = Recorder.seen
    d, r = f"http://127.0.0.1:{debug}", f"http://127.0.0.1:{rotating}"
    print("== a user's requests: what the upstreams received")
    answer = curl(proxy, "-X", "POST", "-H", "X-Debug-User: alice", f"{d}/orders")
    got = seen[-1]
    print(
        f"debug POST /orders -> {answer}; claims {got['claims']}; "
        f"X-Debug-User forwarded: {'X-Debug-User' in got['headers']}"
    )
    echoed = curl(proxy, "-H", "X-Debug-User: alice", f"{d}/echo")
    token = (seen[-1]["headers"].get("Authorization") or "").removeprefix("Bearer ")
    print(
        f"debug GET /echo (the upstream echoes the request) -> {echoed}; the token it got "
        f"in the client's answer: {token in echoed}"
    )
    url = f"{emu.sigv4_url}/prod/items?b=2&a=1&q=a+b"
    print(f"aws POST -> {curl(proxy, '-X', 'POST', '--data', '{}', url)}")
    curl(proxy, f"{r}/warm")
    secret_file.write_text(ROTATED)
    Holder.secret = ROTATED  # the upstream rotates its key; the gateway's token is stale
    before = len(seen)
    answer = curl(proxy, "-X", "POST", "--data", "payload", f"{r}/after-rotation")
    tries = seen[before:]
    print(
        f"rotating POST after a key rotation -> {answer}; upstream answered "
        f"{[t['status'] for t in tries]}, bodies {[t['body'].decode() for t in tries]}"
    )

    print("\n== a hostile client")
    mark = len(seen)
    host = f"127.0.0.1:{debug}".encode()
    attacks = {
        "Host: evil.example on the debug route": curl(
            proxy, "-H", "Host: evil.example", "-H", "X-Debug-User: a", f"{d}/x"
        ),
        "absolute-form to an unrouted host (unmatched: reject)": curl(
            proxy, "http://127.0.0.2:9/x"
        ),
        "CONNECT to an unrouted host": curl(proxy, "-p", "https://127.0.0.2:9/x"),
        "claim input missing": curl(proxy, f"{d}/x"),
        "claim input sent twice": curl(
            proxy, "-H", "X-Debug-User: a", "-H", "x-debug-user: b", f"{d}/x"
        ),
        "claim input of 1025 characters": curl(
            proxy, "-H", "X-Debug-User: " + "x" * 1025, f"{d}/x"
        ),
        "claim input with a 0xff byte": raw(
            proxy,
            b"GET http://"
            + host
            + b"/x HTTP/1.1\r\nHost: "
            + host
            + b"\r\nX-Debug-User: al\xffice\r\nConnection: close\r\n\r\n",
        ),
        "its own Authorization, X-Amz-Security-Token, X-Amz-Date to aws": curl(
            proxy,
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEVIL/x",
            "-H",
            "X-Amz-Security-Token: forged",
            "-H",
            "X-Amz-Date: 20000101T000000Z",
            f"{emu.sigv4_url}/prod/forged",
        ),  # fmt: skip
        "Host naming another host on aws": curl(
            proxy, "-H", "Host: evil.example", f"{emu.sigv4_url}/prod/x"
        ),
        "CONNECT to the debug route, then raw bytes": raw(
            proxy, b"CONNECT " + host + b" HTTP/1.1\r\n\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
        ),
    }
    for name, result in attacks.items():
        print(f"- {name}: {result}")
    reached = seen[mark:]
    foreign = [s for s in reached if s["claims"] and s["claims"].get("sub") not in ("a", None)]
    print(
        f"requests that reached a recording upstream during the attacks: {len(reached)}; "
        f"tokens carrying another user's claim: {len(foreign)}"
    )


def leaks(tmp: Path, output: str) -> tuple[int, int, int]:
    """(flows in the -w file, secrets found in it, secrets in the output and flow log)."""
    needles = [HMAC, ROTATED, AWS_SECRET, SESSION]
    with open(tmp / "flows.mitm", "rb") as f:
        flows = list(io.FlowReader(f).stream())
    in_flows = 0
    for flow in flows:
        blob = b"".join(k + v for k, v in flow.request.headers.fields)
        blob += flow.response.raw_content or b"" if flow.response else b""
        in_flows += sum(n.encode() in blob for n in needles)
    text = output + (tmp / "flows.jsonl").read_text()
    return len(flows), in_flows, sum(n in text for n in needles)


def main() -> int:
    debug, rotating = serve(Recorder), serve(Holder)
    with tempfile.TemporaryDirectory(prefix="authgw-tour-") as name:
        tmp = Path(name)
        secret_file = tmp / "rotating.secret"
        secret_file.write_text(HMAC)
        keys = [SigV4Credential(KEY, AWS_SECRET, SESSION)]
        with StsEmulator(sigv4_credentials=keys) as emu:
            aws = emu.url.removeprefix("http://")
            path = config(tmp, debug.server_port, aws, rotating.server_port, secret_file)
            argv = mitmdump_argv(path, [*LOOPBACK_ANY_PORT, "-w", str(tmp / "flows.mitm")])
            gw = Mitmdump(argv, env=environment(), cwd=tmp).start(timeout=30)
            try:
                tour(gw.port, emu, debug.server_port, rotating.server_port, secret_file)
            finally:
                gw.stop()
        flows, in_flows, in_text = leaks(tmp, gw.output)
    for server in (debug, rotating):
        server.shutdown()
        server.server_close()
    print(
        f"\n-w file: {flows} flows, secrets or tokens in it: {in_flows}; "
        f"in mitmdump's output and the flow log: {in_text}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
