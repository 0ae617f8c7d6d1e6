"""Bad input, end to end: malformed HTTP, hostile `X-Upstream-Host` values, and many
concurrent clients on several routes, against real mitmdump processes with authgw.

Three gateways serve the module:

- `proxy`: regular proxy mode, `unmatched: reject`, one hmac route to a raw recording
  upstream (`api`) and an unrouted one; `-v` and debug logging, so mitmdump prints
  every header it sees (a leaked token would show);
- `reverse`: reverse mode to a routed upstream (`default`); `X-Upstream-Host` may name
  another routed upstream (`target`); also `-v` and debug logging;
- `mixed`: several routes (hmac with dynamic and fixed audiences over several loopback
  addresses and ports, static, STS with a dynamic audience) for the concurrency test.

The upstreams of the first two are raw socket servers that record every request head
they receive, whatever its size (http.server refuses lines over 64 KB and more than 100
headers, so a forwarded oversized request would go unseen). Every exchange has a socket
timeout; a request that mitmproxy forwards must carry exactly its route's token.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from authgw.emulator import StsEmulator
from tests.e2e import conftest
from tests.e2e.clients import direct_request, proxy_request
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.helpers import fingerprint, leaks, new_secret, verify_jwt
from tests.e2e.sts_helpers import TokenVerifier, bearer_token, sts_gateway_env
from tests.e2e.upstreams import RecordedRequest, Upstream

LIFETIME = 300
EXCHANGE_TIMEOUT = 3.0  # seconds a raw client waits for an answer or a close
DEBUG = ["-v", "--set", "termlog_verbosity=debug"]
# A JWT (header and claims are base64url JSON objects): no response or log may show one.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")


# --------------------------------------------------------------------------- raw servers


class RawUpstream:
    """Records the head of every request it receives (any size) and answers 200 `ok`.

    Connections that send nothing (mitmproxy's reverse mode connects before the client
    has sent a request) are not requests and are not recorded.
    """

    MAX_HEAD = 4 << 20

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._heads: list[bytes] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name=f"raw-upstream-{self.port}")

    def __enter__(self) -> RawUpstream:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepter.join(10)
        for thread in self._threads:
            thread.join(10)
        self._listener.close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._heads)

    @property
    def heads(self) -> list[bytes]:
        with self._lock:
            return list(self._heads)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < self.MAX_HEAD:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    head += chunk
                if head:
                    with self._lock:
                        self._heads.append(head.partition(b"\r\n\r\n")[0])
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
            except OSError:
                pass


def parse_head(head: bytes) -> RecordedRequest:
    """A recorded head as the harness's RecordedRequest (headers stripped, order kept)."""
    line, *lines = head.split(b"\r\n")
    method, _, rest = line.decode("latin-1").partition(" ")
    path = rest.rpartition(" ")[0]
    headers = [
        (k.decode("latin-1").strip(), v.decode("latin-1").strip())
        for k, _, v in (h.partition(b":") for h in lines)
    ]
    return RecordedRequest(method, path, headers, b"", 0)


@dataclass(frozen=True)
class Exchange:
    """One raw exchange: the answer, or `status` None when the gateway closed without one."""

    status: int | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def everything(self) -> str:
        """Headers and body, for leak checks."""
        return "\n".join(f"{k}: {v}" for k, v in self.headers) + "\n" + self.text


def exchange(
    port: int, data: bytes, *, half_close: bool = False, timeout: float = EXCHANGE_TIMEOUT
) -> Exchange:
    """Send `data` to 127.0.0.1:`port` and read one answer (or see the connection close).

    `half_close` ends the client's side after sending, as a client does whose body is
    complete in its own eyes. Raises AssertionError if neither happens within `timeout`.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway may answer and close before it read everything
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return Exchange(None)
        except TimeoutError:
            raise AssertionError(f"no answer and no close within {timeout:g}s") from None
        finally:
            resp.close()
        return Exchange(resp.status, resp.getheaders(), body)


# --------------------------------------------------------------------------- gateways


@dataclass
class Lab:
    factory: GatewayFactory
    gateway: Gateway
    upstreams: dict[str, RawUpstream]
    secrets: dict[str, str]  # route -> its hmac secret
    routes: dict[str, str]  # upstream name -> the route that covers it
    answers: list[str] = field(default_factory=list)  # every answer a client got
    tokens: set[str] = field(default_factory=set)  # every token an upstream received

    @property
    def port(self) -> int:
        return self.gateway.port

    def counts(self) -> dict[str, int]:
        return {name: up.count for name, up in self.upstreams.items()}

    def send(self, data: bytes, *, half_close: bool = False) -> Exchange:
        answer = exchange(self.port, data, half_close=half_close)
        self.answers.append(answer.everything())
        return answer

    def check_forwarded(self, name: str, head: bytes, *, audience: str) -> RecordedRequest:
        """`head` carries exactly one token: its route's, for `audience`."""
        request = parse_head(head)
        token = bearer_token(request)
        self.tokens.add(token)
        secret = self.secrets[self.routes[name]]
        header, claims = verify_jwt(token, secret, "HS256", audience=audience)
        assert header["kid"] == fingerprint(secret)
        assert claims["exp"] - claims["iat"] == LIFETIME
        return request

    def assert_nothing_leaked(self) -> None:
        texts = {"mitmdump output": self.gateway.output, "answers": "\n".join(self.answers)}
        found = leaks(texts, [*self.secrets.values(), *self.tokens])
        assert not found, f"credentials printed: {found}"
        for name, text in texts.items():
            jwts = JWT.findall(text)
            assert not jwts, f"{len(jwts)} JWT(s) in the {name}"


def hmac_route(name: str, host: str, env: str) -> dict[str, Any]:
    token = {"type": "hmac", "secret": {"env": env}, "lifetime": LIFETIME, "audience": "dynamic"}
    return {"name": name, "hosts": [host], "token": token}


def _env(route: str) -> str:
    return f"AUTHGW_E2E_BAD_{route.upper()}"


def _lab(
    stack: ExitStack,
    tmp: Path,
    names: list[str],
    routed: dict[str, str],
    top: dict[str, Any],
    extra_args: Callable[[dict[str, RawUpstream]], list[str]],
) -> Lab:
    upstreams = {name: stack.enter_context(RawUpstream()) for name in names}
    keys = {route: new_secret() for route in routed.values()}
    routes = [hmac_route(r, upstreams[n].host, _env(r)) for n, r in routed.items()]
    factory = GatewayFactory(tmp)
    stack.callback(factory.stop_all)  # runs before the upstreams stop
    gateway = factory.start(
        json.dumps({"version": 1, **top, "routes": routes}),
        env={_env(r): key for r, key in keys.items()},
        extra_args=[*extra_args(upstreams), *DEBUG],
    )
    return Lab(factory, gateway, upstreams, keys, routed)


@pytest.fixture(scope="module")
def proxy_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with ExitStack() as stack:
        lab = _lab(
            stack,
            tmp_path_factory.mktemp("bad-proxy"),
            ["api", "unrouted"],
            {"api": "api"},
            {"unmatched": "reject"},
            lambda ups: [],
        )
        yield lab
        lab.factory.stop_all()
        lab.assert_nothing_leaked()  # again, with everything printed up to the exit


@pytest.fixture(scope="module")
def reverse_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with ExitStack() as stack:
        lab = _lab(
            stack,
            tmp_path_factory.mktemp("bad-reverse"),
            ["default", "target"],
            {"default": "reverse_default", "target": "reverse_target"},
            {"upstream_header": "X-Upstream-Host", "upstream_scheme": "http"},
            lambda ups: ["--mode", f"reverse:{ups['default'].url}"],
        )
        yield lab
        lab.factory.stop_all()
        lab.assert_nothing_leaked()


def _use(lab: Lab, request: pytest.FixtureRequest) -> Lab:
    conftest.report_output(request, lab.factory)
    return lab


@pytest.fixture
def proxy(proxy_lab: Lab, request: pytest.FixtureRequest) -> Lab:
    return _use(proxy_lab, request)


@pytest.fixture
def reverse(reverse_lab: Lab, request: pytest.FixtureRequest) -> Lab:
    return _use(reverse_lab, request)


# --------------------------------------------------------------------------- malformed


@dataclass(frozen=True)
class Refused:
    """mitmproxy (or the gateway) answers `status`; the body says `reason`."""

    status: int
    reason: str


@dataclass(frozen=True)
class Closed:
    """The connection is closed without an answer."""


@dataclass(frozen=True)
class Forwarded:
    """mitmproxy 11 accepts it: forwarded once to `upstream`, with exactly its route's token."""

    upstream: str


Expect = Refused | Closed | Forwarded
BAD_LINE = Refused(400, "Bad HTTP request line")

# id -> (port: "proxy" | "reverse", request bytes from (api host:port, unrouted host:port),
#        half-close after sending, what happens)
MALFORMED: dict[str, tuple[str, Callable[[str, str], bytes], bool, Expect]] = {
    "garbage_request_line": ("proxy", lambda h, u: b"GARBAGE\r\n\r\n", False, BAD_LINE),
    "request_line_four_parts": (
        "proxy",
        lambda h, u: b"GET / / HTTP/1.1\r\n\r\n",
        False,
        BAD_LINE,
    ),
    "request_line_without_version": (
        "proxy",
        lambda h, u: f"GET http://{h}/\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "version_not_http": (
        "proxy",
        lambda h, u: f"GET http://{h}/ HTTX/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "version_with_suffix": (
        "proxy",
        lambda h, u: f"GET http://{h}/ HTTP/1.1x\r\nHost: {h}\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "version_without_dot": (
        "proxy",
        lambda h, u: f"GET http://{h}/ HTTP/11\r\nHost: {h}\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "space_in_target": (
        "proxy",
        lambda h, u: f"GET http://{h}/a b HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "userinfo_in_target": (
        "proxy",
        lambda h, u: f"GET http://user:pw@{h}/ HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "port_out_of_range": (
        "proxy",
        lambda h, u: f"GET http://127.0.0.1:99999/ HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        BAD_LINE,
    ),
    "header_without_colon": (
        "proxy",
        lambda h, u: f"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\nNoColonHere\r\n\r\n".encode(),
        False,
        Refused(400, "Invalid header line"),
    ),
    "header_name_with_space": (
        "proxy",
        lambda h, u: f"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\nX-A : 1\r\n\r\n".encode(),
        False,
        Refused(400, "invalid header name"),
    ),
    "nul_in_header_name": (
        "proxy",
        lambda h, u: f"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\nX\x00A: 1\r\n\r\n".encode(),
        False,
        Refused(400, "invalid header name"),
    ),
    "origin_form_without_host": (
        "proxy",
        lambda h, u: b"GET /x HTTP/1.1\r\n\r\n",
        False,
        Refused(400, "no host header"),
    ),
    "content_length_absurd": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n"
            f"Content-Length: {'9' * 30}\r\n\r\nabc".encode()
        ),
        True,  # mitmproxy waits for the announced body; the client ends its side
        Closed(),
    ),
    "content_length_negative": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\nContent-Length: -5\r\n\r\nabc".encode()
        ),
        False,
        Refused(400, "invalid content-length"),
    ),
    "content_length_conflicting": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n"
            "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".encode()
        ),
        False,
        Refused(400, "invalid content-length"),
    ),
    "content_length_and_chunked": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n"
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()
        ),
        False,
        Refused(400, "both transfer-encoding and content-length"),
    ),
    "transfer_encoding_unknown": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n"
            "Transfer-Encoding: gzip, chunked, identity\r\n\r\n0\r\n\r\n".encode()
        ),
        False,
        Refused(400, "unknown transfer-encoding"),
    ),
    "chunk_size_not_hex": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".encode()
        ),
        False,
        Closed(),
    ),
    "chunk_size_absurd": (
        "proxy",
        lambda h, u: (
            f"POST http://{h}/ HTTP/1.1\r\nHost: {h}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{'f' * 24}\r\nabc\r\n".encode()
        ),
        False,
        Closed(),
    ),
    "host_header_names_a_routed_host": (
        # Routing follows the request's target, not the Host header a client chose.
        "proxy",
        lambda h, u: f"GET http://{u}/ HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        Refused(403, "no route for host"),
    ),
    # mitmproxy 11 accepts and forwards these; the token goes only to the routed host.
    "version_9_9": (  # HTTP-version = "HTTP/" DIGIT "." DIGIT: well-formed
        "proxy",
        lambda h, u: f"GET http://{h}/v99 HTTP/9.9\r\nHost: {h}\r\n\r\n".encode(),
        False,
        Forwarded("api"),
    ),
    "nul_in_target": (
        "proxy",
        lambda h, u: f"GET http://{h}/a\x00b HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        Forwarded("api"),
    ),
    "nul_in_method": (
        "proxy",
        lambda h, u: f"G\x00ET http://{h}/m HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        Forwarded("api"),
    ),
    "nul_in_header_value": (
        "proxy",
        lambda h, u: f"GET http://{h}/v HTTP/1.1\r\nHost: {h}\r\nX-A: a\x00b\r\n\r\n".encode(),
        False,
        Forwarded("api"),
    ),
    "header_value_100kb": (
        "proxy",
        lambda h, u: (
            f"GET http://{h}/big HTTP/1.1\r\nHost: {h}\r\nX-Big: {'a' * 100_000}\r\n\r\n".encode()
        ),
        False,
        Forwarded("api"),
    ),
    "headers_1000": (
        "proxy",
        lambda h, u: (
            f"GET http://{h}/many HTTP/1.1\r\nHost: {h}\r\n"
            + "".join(f"X-H{i}: v\r\n" for i in range(1000))
            + "\r\n"
        ).encode(),
        False,
        Forwarded("api"),
    ),
    "request_line_64kb": (
        "proxy",
        lambda h, u: f"GET http://{h}/{'p' * 65_536} HTTP/1.1\r\nHost: {h}\r\n\r\n".encode(),
        False,
        Forwarded("api"),
    ),
    "forged_authorization_1000_times": (
        "proxy",
        lambda h, u: (
            f"GET http://{h}/forged HTTP/1.1\r\nHost: {h}\r\n"
            + "".join(
                f"{'AuThOrIzAtIoN' if i % 2 else 'Authorization'}: Bearer forged-{i}\r\n"
                for i in range(1000)
            )
            + "\r\n"
        ).encode(),
        False,
        Forwarded("api"),
    ),
    # Reverse mode: mitmproxy fills in the missing Host from the reverse target.
    "reverse_http11_without_host": (
        "reverse",
        lambda h, u: b"GET /nohost HTTP/1.1\r\n\r\n",
        False,
        Forwarded("default"),
    ),
    "reverse_request_line_64kb": (
        "reverse",
        lambda h, u: f"GET /{'p' * 65_536} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
        False,
        Forwarded("default"),
    ),
}


@pytest.mark.parametrize(
    ("port", "build", "half_close", "expect"), list(MALFORMED.values()), ids=list(MALFORMED)
)
def test_malformed_request_is_refused_closed_or_forwarded_with_its_token_only(
    request: pytest.FixtureRequest,
    port: str,
    build: Callable[[str, str], bytes],
    half_close: bool,
    expect: Expect,
) -> None:
    lab: Lab = request.getfixturevalue(port)
    first = next(iter(lab.upstreams.values()))
    other = list(lab.upstreams.values())[-1]
    before = lab.counts()

    answer = lab.send(build(first.host, other.host), half_close=half_close)

    if isinstance(expect, Forwarded):
        assert answer.status == 200 and answer.body == b"ok", (answer.status, answer.text[:300])
        head = lab.upstreams[expect.upstream].heads[-1]  # recorded before the upstream answered
        forwarded = lab.check_forwarded(expect.upstream, head, audience="http://127.0.0.1")
        assert not [v for k, v in forwarded.headers if "forged" in v], "a client value was kept"
    elif isinstance(expect, Refused):
        assert answer.status == expect.status, (answer.status, answer.text[:300])
        assert expect.reason.lower() in answer.text.lower(), answer.text[:300]
    else:
        assert answer.status is None, (answer.status, answer.text[:300])

    # The gateway serves a normal request afterwards: a marker sent once the malformed
    # exchange ended, so any forward of the malformed request came before it.
    if port == "proxy":
        normal = proxy_request(lab.port, "GET", f"{first.url}/normal", timeout=5)
    else:
        normal = direct_request(lab.port, "GET", "/normal", timeout=5)
    assert normal.status == 200, normal.text
    marker = "api" if port == "proxy" else "default"
    lab.check_forwarded(marker, first.heads[-1], audience="http://127.0.0.1")
    want = {**before, marker: before[marker] + 1}
    if isinstance(expect, Forwarded):
        want[expect.upstream] += 1
    assert lab.counts() == want, "a malformed request was forwarded (or forwarded twice)"
    lab.assert_nothing_leaked()


# --------------------------------------------------------------------------- X-Upstream-Host

BAD_UPSTREAM_HOST = "bad X-Upstream-Host"
# id -> (the header lines from the target's host:port, what happens). test_core.py covers
# the plain malformed values; these try to smuggle a second value or header past the check.
HOSTILE_UPSTREAM_HOST: dict[str, tuple[Callable[[str], bytes], Expect]] = {
    "bare_cr_then_header": (
        lambda t: f"X-Upstream-Host: {t}\rX-Evil: 1".encode(),
        Refused(400, "control"),
    ),
    "crlf_then_second_upstream_header": (
        lambda t: f"X-Upstream-Host: a.example\r\nX-Upstream-Host: {t}".encode(),
        Refused(400, "sent 2 times"),
    ),
    "bare_lf_then_second_upstream_header": (
        lambda t: f"X-Upstream-Host: a.example\nX-Upstream-Host: {t}".encode(),
        Refused(400, "sent 2 times"),
    ),
    "obs_fold_space": (
        lambda t: f"X-Upstream-Host: a.example\r\n {t}".encode(),
        Refused(400, "whitespace"),
    ),
    "obs_fold_tab_header": (
        lambda t: f"X-Upstream-Host: {t}\r\n\tX-Evil: 1".encode(),
        Refused(400, "whitespace"),
    ),
    "obs_fold_after_empty_value": (
        lambda t: f"X-Upstream-Host:\r\n {t}".encode(),
        Refused(400, "whitespace"),
    ),
    "value_10kb": (lambda t: f"X-Upstream-Host: {'a' * 10_000}".encode(), Refused(400, "too long")),
    "value_10kb_of_labels": (
        lambda t: f"X-Upstream-Host: {'a.' * 5_000}example".encode(),
        Refused(400, "too long"),
    ),
    "repeated_100_times": (
        lambda t: "\r\n".join([f"X-Upstream-Host: {t}"] * 100).encode(),
        Refused(400, "sent 100 times"),
    ),
    "repeated_in_other_case": (
        lambda t: f"X-Upstream-Host: {t}\r\nx-UPSTREAM-host: {t}".encode(),
        Refused(400, "sent 2 times"),
    ),
    "comma_list": (lambda t: f"X-Upstream-Host: {t}, {t}".encode(), Refused(400, "whitespace")),
    "percent_encoded_crlf": (
        lambda t: f"X-Upstream-Host: {t}%0d%0aX-Evil:%201".encode(),
        Refused(400, "'%' is not allowed"),
    ),
    "unicode_line_separator": (
        lambda t: f"X-Upstream-Host: {t}\u2028X-Evil: 1".encode(),
        Refused(400, "non-ASCII"),
    ),
    "next_line_byte": (
        lambda t: f"X-Upstream-Host: {t}".encode() + b"\x85X-Evil: 1",
        Refused(400, "non-ASCII"),
    ),
    "vertical_tab": (lambda t: f"X-Upstream-Host: {t}\x0bX".encode(), Refused(400, "control")),
    "empty": (lambda t: b"X-Upstream-Host:", Refused(400, "empty")),
    "space_before_colon": (  # mitmproxy's own 400: an invalid header name
        lambda t: f"X-Upstream-Host : {t}".encode(),
        Refused(400, "invalid header name"),
    ),
    # Split at a CRLF (or a bare LF, which mitmproxy takes as a line end), the value is a
    # plain host and what follows an ordinary header of the client's.
    "crlf_unrouted_then_header": (
        lambda t: b"X-Upstream-Host: a.example\r\nX-Evil: 1",
        Refused(403, "no route for host"),
    ),
    "crlf_routed_then_header": (
        lambda t: f"X-Upstream-Host: {t}\r\nX-Evil: 1".encode(),
        Forwarded("target"),
    ),
    "bare_lf_routed_then_header": (
        lambda t: f"X-Upstream-Host: {t}\nX-Evil: 1".encode(),
        Forwarded("target"),
    ),
    "crlf_routed_then_host_header": (
        lambda t: f"X-Upstream-Host: {t}\r\nHost: evil.example".encode(),
        Forwarded("target"),
    ),
    "trailing_form_feed": (  # mitmproxy strips it (bytes.strip) before the addon looks
        lambda t: f"X-Upstream-Host: {t}\x0c".encode(),
        Forwarded("target"),
    ),
}


@pytest.mark.parametrize(
    ("lines", "expect"), list(HOSTILE_UPSTREAM_HOST.values()), ids=list(HOSTILE_UPSTREAM_HOST)
)
def test_hostile_upstream_header_is_refused_or_goes_only_to_the_routed_target(
    reverse: Lab, lines: Callable[[str], bytes], expect: Expect
) -> None:
    target = reverse.upstreams["target"]
    before = reverse.counts()

    answer = reverse.send(
        b"GET /hostile HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines(target.host) + b"\r\n\r\n"
    )

    if isinstance(expect, Refused):
        assert answer.status == expect.status, (answer.status, answer.text[:300])
        assert expect.reason.lower() in answer.text.lower(), answer.text[:300]
        if expect.status == 400 and "header name" not in expect.reason:
            assert answer.text.startswith(BAD_UPSTREAM_HOST), answer.text[:300]
    else:
        assert answer.status == 200 and answer.body == b"ok", (answer.status, answer.text[:300])
        forwarded = reverse.check_forwarded("target", target.heads[-1], audience="http://127.0.0.1")
        assert forwarded.path == "/hostile"
        assert forwarded.header_values("X-Upstream-Host") == []
        assert forwarded.header_values("Host") == [target.host]

    # A marker sent once the hostile exchange ended: any forward of it came before this one.
    normal = direct_request(
        reverse.port, "GET", "/normal", {"X-Upstream-Host": target.host}, timeout=5
    )
    assert normal.status == 200, normal.text
    reverse.check_forwarded("target", target.heads[-1], audience="http://127.0.0.1")
    hostile_forwarded = 0 if isinstance(expect, Refused) else 1
    want = {**before, "target": before["target"] + hostile_forwarded + 1}
    assert reverse.counts() == want, "forwarded" if hostile_forwarded == 0 else "forwarded twice"
    reverse.assert_nothing_leaked()


# --------------------------------------------------------------------------- concurrency

THREADS, PER_THREAD = 8, 50
STATIC_VALUE = "static-" + secrets.token_hex(40)  # >= 64 bytes, not a JWT
FIXED_AUDIENCE = "urn:authgw:e2e-fixed"


@dataclass(frozen=True)
class Target:
    route: str
    upstream: Upstream

    @property
    def audience(self) -> str:
        return FIXED_AUDIENCE if self.route == "hmac_fixed" else f"http://{self.upstream.host}"


def test_concurrent_clients_on_many_routes_each_get_their_own_token(
    tmp_path: Path, gateway_factory: GatewayFactory
) -> None:
    hosts = {  # route -> its upstreams' addresses (127.0.0.2 twice: two ports, one audience)
        "hmac_dynamic": ["127.0.0.2", "127.0.0.2", "127.0.0.3"],
        "hmac_fixed": ["127.0.0.4"],
        "static": ["127.0.0.5"],
        "sts_dynamic": ["127.0.0.6", "127.0.0.7"],
    }
    keys = {"hmac_dynamic": new_secret(), "hmac_fixed": new_secret()}
    with ExitStack() as stack, pytest.MonkeyPatch.context() as mp:
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            mp.delenv(var, raising=False)
        emulator = stack.enter_context(StsEmulator())
        emulator.set_latency(0.1)  # so that requests pile up on the first fetch
        targets = [
            Target(route, stack.enter_context(Upstream(host=host, http10=True)))
            for route, addresses in hosts.items()
            for host in addresses
        ]
        tokens: dict[str, dict[str, Any]] = {
            "hmac_dynamic": {"audience": "dynamic"},
            "hmac_fixed": {"audience": FIXED_AUDIENCE, "algorithm": "HS384"},
        }
        routes: list[dict[str, Any]] = [
            {
                "name": route,
                "hosts": sorted(set(addresses)),
                "token": {
                    "type": "hmac",
                    "secret": {"env": _env(route)},
                    "lifetime": LIFETIME,
                    **tokens[route],
                },
            }
            for route, addresses in hosts.items()
            if route in keys
        ]
        routes.append(
            {
                "name": "static",
                "hosts": hosts["static"],
                "token": {"type": "static", "value": {"env": _env("static")}},
            }
        )
        routes.append(
            {
                "name": "sts_dynamic",
                "hosts": hosts["sts_dynamic"],
                "token": {"type": "sts", "audience": "dynamic"},
            }
        )
        env = {
            **sts_gateway_env(emulator.url, tmp_path),
            **{_env(route): key for route, key in keys.items()},
            _env("static"): STATIC_VALUE,
        }
        gateway = gateway_factory(
            json.dumps({"version": 1, "unmatched": "reject", "routes": routes}), env=env
        )

        def client(thread: int) -> list[int]:
            statuses = []
            for i, target in enumerate(_plan(targets, thread)):
                resp = proxy_request(
                    gateway.port,
                    "GET",
                    f"{target.upstream.url}/c/{thread}/{i}",
                    {"Authorization": f"Bearer forged-{thread}-{i}"},
                    timeout=10,
                )
                statuses.append(resp.status)
            return statuses

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            statuses = [s for batch in pool.map(client, range(THREADS)) for s in batch]
        elapsed = time.monotonic() - started

        assert Counter(statuses) == {200: THREADS * PER_THREAD}, gateway.output[-3000:]
        expected_paths = Counter(
            (id(t.upstream), f"/c/{thread}/{i}")
            for thread in range(THREADS)
            for i, t in enumerate(_plan(targets, thread))
        )
        received = Counter((id(t.upstream), r.path) for t in targets for r in t.upstream.requests)
        assert received == expected_paths, "requests went missing, twice or to the wrong host"

        verifier = TokenVerifier(emulator.jwks_url, emulator.issuer)
        by_audience: dict[tuple[str, str], set[str]] = {}
        for target in targets:
            for request in target.upstream.requests:
                token = bearer_token(request)
                by_audience.setdefault((target.route, target.audience), set()).add(token)
        for (route, audience), seen in by_audience.items():
            # One key, one fetch: every request of a route and audience got the same token.
            assert len(seen) == 1, f"{route} {audience}: {len(seen)} different tokens"
            token = next(iter(seen))
            if route == "static":
                assert fingerprint(token) == fingerprint(STATIC_VALUE)
            elif route == "sts_dynamic":
                verifier.verify(token, audience=[audience], algorithm="RS256")
            else:
                algorithm = tokens[route].get("algorithm", "HS256")
                header, claims = verify_jwt(token, keys[route], algorithm, audience=audience)
                assert header["kid"] == fingerprint(keys[route])
        all_tokens = [t for seen in by_audience.values() for t in seen]
        assert len(set(all_tokens)) == len(all_tokens) == 6  # no token served two audiences
        assert sorted(c.audiences for c in emulator.calls) == [
            ("http://127.0.0.6",),
            ("http://127.0.0.7",),
        ]
        assert elapsed < 60, f"{THREADS * PER_THREAD} requests took {elapsed:.1f}s"
        found = leaks(
            {"mitmdump output": gateway.output}, [*keys.values(), STATIC_VALUE, *all_tokens]
        )
        assert not found, f"credentials printed: {found}"


def _plan(targets: list[Target], thread: int) -> list[Target]:
    """Every thread walks all targets, interleaved, each thread in an order of its own."""
    plan = [targets[i % len(targets)] for i in range(PER_THREAD)]
    random.Random(thread).shuffle(plan)
    return plan
