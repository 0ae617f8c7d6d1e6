"""The built-in demo: the gateway on loopback, no AWS account, no network.

    python scripts/demo.py              # run it once and show what happened
    python scripts/demo.py --keep-running   # leave it up to try with curl

It starts four local upstreams that echo what they receive, the local STS and
OAuth2 emulator, and mitmdump with the gateway on a generated config with one route
per token source (hmac, sts, static, oauth2), and a sigv4 route to the emulator's SigV4
echo. Then it sends a request through the proxy to each and shows the token each
upstream received, decoded and verified, and the emulator's verdict on the signature.
Tokens are shown decoded with their fingerprint, never in full.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt

# Run as `python scripts/demo.py`: scripts/ is on sys.path (not the repository root).
from launcher import LOOPBACK_ANY_PORT, LaunchError, Mitmdump
from loopback import free_port, get_text

from authgw import cli
from authgw.cli import mitmdump_argv
from authgw.emulator import DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET, StsEmulator
from authgw.emulator.sigv4 import SigV4Credential
from authgw.tokens import fingerprint, peek

DEMO_SECRET = "demo-secret-for-the-status-dashboard-0123456789"
DEMO_STATIC = "demo-static-gateway-token-5f3c2a"
DEMO_AWS_KEY = "AKIDDEMO"
DEMO_AWS_SECRET = "demo-not-a-real-key"
DEMO_PLACEHOLDER = "ph-demo-gateway-key-0001"


class Echo(BaseHTTPRequestHandler):
    """Answers with what it received (the gateway scrubs the token out of that answer:
    the client gets its redaction) and keeps it in ``received`` for the demo to show."""

    received: list[dict[str, Any]] = []

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        got = {
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "body": body,
        }
        Echo.received.append(got)
        payload = json.dumps(got).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_echo() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def demo_config(
    dash: int, partner: int, gateway: int, idp_api: int, metrics: int, token_url: str, aws: str
) -> str:
    return textwrap.dedent(f"""\
        version: 1
        flowlog: flow.jsonl
        metrics: 127.0.0.1:{metrics}
        routes:
          - name: status_dashboard          # the CloudMon-style reporter's token
            hosts: ["127.0.0.1:{dash}"]
            token:
              type: hmac
              secret: {{env: MP_STATUS_DASHBOARD__SECRET}}
              claims: {{stackmon: dummy}}
          - name: partner_api               # a JWT from (emulated) AWS STS
            hosts: ["127.0.0.1:{partner}"]
            token:
              type: sts
              audience: dynamic
              signing_algorithm: RS256
              duration: 300
              tags: {{team: payments}}
          - name: gateway                   # a static token from a file
            hosts: ["127.0.0.1:{gateway}"]
            placeholder: {DEMO_PLACEHOLDER}   # what a sandboxed client holds instead
            token:
              type: static
              value: {{file: gateway-token}}
          - name: idp_api                   # OAuth2 client credentials (the emulator's IdP)
            hosts: ["127.0.0.1:{idp_api}"]
            token:
              type: oauth2
              token_url: {token_url}
              client_id: {{env: DEMO_OAUTH2_CLIENT_ID}}
              client_secret: {{env: DEMO_OAUTH2_CLIENT_SECRET}}
              scope: read
              audience: dynamic
          - name: aws_api                   # SigV4, checked by the emulator's echo
            hosts: ["{aws}"]
            token:
              type: sigv4
              service: execute-api
        """)


def start_gateway(workdir: Path, env: dict[str, str]) -> Mitmdump:
    """mitmdump with the gateway on workdir/gateway.yaml, listening (SystemExit if not)."""
    argv = mitmdump_argv(workdir / "gateway.yaml", LOOPBACK_ANY_PORT)
    verbose = bool(os.environ.get("AUTHGW_DEMO_VERBOSE"))
    gateway = Mitmdump(argv, env=env, cwd=workdir, on_line=_echo if verbose else None)
    try:
        return gateway.start(timeout=30)
    except LaunchError as e:
        raise SystemExit(f"mitmdump did not start: {e}") from None


def _echo(line: str) -> None:
    sys.stdout.write(f"  mitmdump | {line}\n")


def scrape(port: int) -> list[str]:
    text = get_text(port, "/metrics")
    keep = (
        "authgw_requests_total",
        "authgw_token_fetch_total",
        "authgw_token_cache_",
        "authgw_upstream_request_duration_seconds_count",
    )
    return [line for line in text.splitlines() if line.startswith(keep)]


def through_proxy(
    proxy_port: int,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=15)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data


def show(title: str, status: int, echoed: dict[str, Any] | str, verify: Any) -> None:
    print(f"\n== {title}: HTTP {status}")
    if not isinstance(echoed, dict) or not Echo.received:
        print(f"   answer: {str(echoed).strip()}")
        return
    got = Echo.received[-1]  # what the upstream received
    token = got["headers"].get("Authorization", "").removeprefix("Bearer ")
    peeked = peek(token)
    print(
        f"   upstream got {got['method']} {got['path']} with "
        f"Authorization: Bearer <{fingerprint(token)}>"
    )
    print(f"   its echo reached the client as: {echoed['headers'].get('Authorization')}")
    if peeked is not None:
        print(f"   header: {json.dumps(peeked.header)}")
        print(f"   claims: {json.dumps(peeked.claims)}")
    try:
        verify(token)
        print("   signature: valid")
    except jwt.PyJWTError as e:
        print(f"   signature: INVALID ({e})")


def sandboxed(port: int, gw: int, dash: int) -> None:
    """A client that holds only the gateway route's placeholder (docs/sandbox.md)."""
    print("\n== a sandboxed client holding only the placeholder (gateway)")
    path = f"/sandboxed?token={DEMO_PLACEHOLDER}"
    status, _ = through_proxy(port, "GET", f"http://127.0.0.1:{gw}{path}")
    got = Echo.received[-1]["path"].partition("token=")[2]
    print(
        f"   GET {path} -> HTTP {status}; the upstream got token=<{fingerprint(got)}>, "
        f"the file's token: {got == DEMO_STATIC}"
    )
    elsewhere = f"http://127.0.0.1:{dash}/paste?token={DEMO_PLACEHOLDER}"
    status, answer = through_proxy(port, "GET", elsewhere)
    print(f"   the same placeholder to status_dashboard's host -> HTTP {status} {answer}".rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the gateway up for curl until Ctrl-C"
    )
    args = parser.parse_args()
    # SIGTERM (kill, a service manager) ends the demo as Ctrl-C does: the finally blocks
    # below stop mitmdump and the echo servers instead of leaving them running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    echoes = [start_echo() for _ in range(4)]
    dash, partner, gw, idp = (s.server_address[1] for s in echoes)
    keys = [SigV4Credential(DEMO_AWS_KEY, DEMO_AWS_SECRET)]
    with (
        StsEmulator(sigv4_credentials=keys) as sts,
        tempfile.TemporaryDirectory(prefix="authgw-demo-") as tmp,
    ):
        workdir = Path(tmp)
        metrics_port = free_port()
        aws = sts.url.removeprefix("http://")
        (workdir / "gateway.yaml").write_text(
            demo_config(dash, partner, gw, idp, metrics_port, sts.token_url, aws)
        )
        (workdir / "gateway-token").write_text(DEMO_STATIC + "\n")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().endswith("_PROXY") and not k.startswith("AWS_")
        }
        env.update(
            {
                "MP_STATUS_DASHBOARD__SECRET": DEMO_SECRET,
                "AWS_ENDPOINT_URL_STS": sts.url,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": DEMO_AWS_KEY,
                "AWS_SECRET_ACCESS_KEY": DEMO_AWS_SECRET,
                "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "DEMO_OAUTH2_CLIENT_ID": DEMO_OAUTH2_CLIENT_ID,
                "DEMO_OAUTH2_CLIENT_SECRET": DEMO_OAUTH2_CLIENT_SECRET,
            }
        )
        print(
            f"authgw demo: upstreams on 127.0.0.1:{dash},{partner},{gw},{idp}; "
            f"STS and OAuth2 emulator at {sts.url}"
        )
        gateway = start_gateway(workdir, env)
        port = gateway.port
        print(f"gateway (mitmdump -s addons/auth_gateway.py) listening on 127.0.0.1:{port}")
        try:
            status, echoed = through_proxy(
                port,
                "POST",
                f"http://127.0.0.1:{dash}/v1/component_status",
                json.dumps({"name": "api", "status": "ok"}).encode(),
                {"Content-Type": "application/json"},
            )
            show(
                "hmac (status_dashboard)",
                status,
                echoed,
                lambda t: jwt.decode(t, DEMO_SECRET, algorithms=["HS256"]),
            )
            jwks = jwt.PyJWKClient(sts.jwks_url)
            status, echoed = through_proxy(port, "GET", f"http://127.0.0.1:{partner}/orders")
            show(
                "sts (partner_api)",
                status,
                echoed,
                lambda t: jwt.decode(
                    t,
                    jwks.get_signing_key_from_jwt(t).key,
                    algorithms=["RS256", "ES384"],
                    audience="http://127.0.0.1",
                ),
            )
            status, echoed = through_proxy(port, "GET", f"http://127.0.0.1:{gw}/health")
            show(
                "static (gateway)",
                status,
                echoed,
                lambda t: (
                    None
                    if t == DEMO_STATIC
                    else (_ for _ in ()).throw(jwt.InvalidTokenError("not the file's token"))
                ),
            )
            sandboxed(port, gw, dash)
            status, echoed = through_proxy(port, "GET", f"http://127.0.0.1:{idp}/reports")
            show(
                "oauth2 (idp_api)",
                status,
                echoed,
                lambda t: jwt.decode(
                    t,
                    jwks.get_signing_key_from_jwt(t).key,
                    algorithms=["RS256"],
                    audience="http://127.0.0.1",
                ),
            )
            status, echoed = through_proxy(
                port,
                "POST",
                f"{sts.sigv4_url}/prod/orders?b=2&a=1&q=a+b",
                json.dumps({"item": "book"}).encode(),
                {"Content-Type": "application/json"},
            )
            print(f"\n== sigv4 (aws_api): HTTP {status}")
            if isinstance(echoed, dict) and echoed.get("verified"):
                print(
                    f"   the emulator checked the signature with botocore: valid; "
                    f"{echoed['method']} {echoed['path']}, service {echoed['service']}, "
                    f"region {echoed['region']}"
                )
                print(f"   signed headers: {';'.join(echoed['signed_headers'])}")
            else:
                print(f"   signature: INVALID ({echoed})")
            time.sleep(0.2)
            print("\n== flow log (flow.jsonl), one record per flow:")
            for line in (workdir / "flow.jsonl").read_text().splitlines():
                print("   " + line)
            print(f"\n== curl http://127.0.0.1:{metrics_port}/metrics (authgw_ series, excerpt):")
            for line in scrape(metrics_port):
                print("   " + line)
            print(f"\n== authgw status --url http://127.0.0.1:{metrics_port}")
            cli.main(["status", "--url", f"http://127.0.0.1:{metrics_port}"])
            if args.keep_running:
                print(
                    textwrap.dedent(f"""
                    The gateway stays up. Try:
                      curl -x http://127.0.0.1:{port} http://127.0.0.1:{dash}/v1/component_status
                      curl -x http://127.0.0.1:{port} http://127.0.0.1:{partner}/
                    Ctrl-C stops everything.""")
                )
                try:
                    gateway.wait()
                except KeyboardInterrupt:
                    pass
        finally:
            gateway.stop()
            for server in echoes:
                server.shutdown()
                server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
