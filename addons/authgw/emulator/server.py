"""The emulator's lifecycle and controls, and ``serve()`` for ``authgw emulator``.

``StsEmulator`` binds a loopback port and serves on a daemon thread; its handler
(``authgw.emulator.handler``) sends ``POST /`` to the STS query protocol, ``POST
/oauth2/token`` to the OAuth2 token endpoint, ``/.well-known/*`` to discovery and the
JWKS, and ``/_emulator/*`` to the test controls that are also methods here.
``serve()`` runs one in the foreground and prints how to use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import authgw.emulator.keys as keys
from authgw.emulator.controls import CallLog, Faults
from authgw.emulator.handler import EmulatorServer, EmulatorServer6, Handler
from authgw.emulator.oauth2 import (
    AUTH_METHODS,
    DEFAULT_LIFETIME,
    SIGNING_ALGORITHM,
    TOKEN_PATH,
    OAuth2Service,
)
from authgw.emulator.oauth2 import TOKEN_CLAIMS as OAUTH2_CLAIMS
from authgw.emulator.oauth2_controls import OAuth2Controls
from authgw.emulator.oauth2_request import (
    DEMO_OAUTH2_CLIENT_ID,
    DEMO_OAUTH2_CLIENT_SECRET,
    OAuth2Client,
    client_registry,
)
from authgw.emulator.sigv4 import SIGV4_PATH, SigV4Credential, SigV4Verifier
from authgw.emulator.sts import (
    AWS_ERRORS,
    DEMO_ACCESS_KEY_ID,
    DEMO_ORIGIN_SUBJECT,
    DEMO_REGION,
    DEMO_SECRET_ACCESS_KEY,
    TOKEN_CLAIMS,
    StsService,
)
from authgw.emulator.sts_request import SIGNING_ALGORITHMS, CallRecord

logger = logging.getLogger(__name__)

_AWS_MESSAGES = {code: error.message for code, error in AWS_ERRORS.items()}


class StsEmulator(OAuth2Controls):
    """A local STS ``GetWebIdentityToken`` and OAuth2 token endpoint on one HTTP server thread.

    Use as ``with StsEmulator() as sts: ...`` or ``start()`` / ``stop()``. ``url``,
    ``issuer``, ``jwks_url`` and ``token_url`` are valid once started. Fault and latency
    controls and the call records are thread-safe. ``oauth2_clients`` (``{id: secret}``
    or ``OAuth2Client``s) replaces the one demo client; ``origin_subject`` is the ``sub``
    of ``SubjectMode=OriginIdentity`` tokens (None: such calls are a ValidationError).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        account: str = "123456789012",
        origin_subject: str | None = DEMO_ORIGIN_SUBJECT,
        oauth2_clients: Mapping[str, str] | Iterable[OAuth2Client] | None = None,
        oauth2_lifetime: int = DEFAULT_LIFETIME,
        sigv4_credentials: Iterable[SigV4Credential] = (),
    ) -> None:
        super().__init__(oauth2_lifetime)
        self._host = host
        self._port = port
        self._clock = clock
        self._account = account
        self._origin_subject = origin_subject
        self._oauth2_clients = client_registry(oauth2_clients)
        demo = SigV4Credential(DEMO_ACCESS_KEY_ID, DEMO_SECRET_ACCESS_KEY)
        self.sigv4 = SigV4Verifier([demo, *sigv4_credentials], clock=clock)
        self._stopping = threading.Event()
        self._faults = Faults()
        self._calls: CallLog[CallRecord] = CallLog()
        self._keys: dict[str, keys.SigningKey] = {}
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> StsEmulator:
        """Generate signing keys, bind, and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("StsEmulator already started")
        self._stopping.clear()
        self._keys = {alg: keys.make_key(alg) for alg in SIGNING_ALGORITHMS}
        server_class = EmulatorServer6 if ":" in self._host else EmulatorServer
        server = server_class((self._host, self._port), Handler)
        server.emulator = self
        host, port = server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        # A wildcard bind is reachable on loopback; the issuer must be a URL clients can use.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        server.sts = StsService(
            issuer=self.issuer,
            account=self._account,
            keys=self._keys,
            clock=self._clock,
            faults=self._faults,
            calls=self._calls,
            stopping=self._stopping,
            origin_subject=self._origin_subject,
        )
        server.oauth2 = OAuth2Service(
            issuer=self.issuer,
            key=self._keys[SIGNING_ALGORITHM],
            clients=self._oauth2_clients,
            clock=self._clock,
            faults=self._oauth2_faults,
            calls=self._oauth2_calls,
            stopping=self._stopping,
        )
        server.sigv4 = self.sigv4
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sts-emulator-{port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("sts emulator listening on %s", self._url)
        return self

    def stop(self) -> None:
        """Stop serving; calls waiting out an injected latency answer at once. Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("sts emulator on %s stopped", self._url)

    def __enter__(self) -> StsEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; boto3's ``endpoint_url``."""
        if self._url is None:
            raise RuntimeError("StsEmulator not started")
        return self._url

    @property
    def issuer(self) -> str:
        """The ``iss`` claim of every token: the emulator's own URL (OIDC discovery)."""
        return self.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    @property
    def token_url(self) -> str:
        """The OAuth2 client-credentials token endpoint."""
        return self.url + TOKEN_PATH

    @property
    def sigv4_url(self) -> str:
        """The SigV4 echo endpoint: any path below it checks the request's signature."""
        return self.url + SIGV4_PATH.rstrip("/")

    @property
    def account(self) -> str:
        return self._account

    # -- fault injection and call record -------------------------------------------

    def fail_with(self, code: str, times: int | None = None, message: str | None = None) -> None:
        """Answer the next ``times`` GetWebIdentityToken calls (all if None) with ``code``.

        ``code`` must be a key of AWS_ERRORS; the HTTP status is the one STS uses.
        """
        self._faults.inject(code, times, message, _AWS_MESSAGES, "AWS error code")

    def set_latency(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each GetWebIdentityToken call."""
        self._faults.set_latency(seconds)

    def hold(self) -> None:
        """Hold every GetWebIdentityToken answer until ``release()`` (tests count who waits)."""
        self._faults.gate.clear()

    def release(self) -> None:
        self._faults.gate.set()

    def set_clock_skew(self, seconds: float) -> None:
        """Issue tokens as if this STS's clock ran ``seconds`` behind: they arrive with that
        much less of their life left (a source whose tokens come back near expiry)."""
        self._faults.set_skew(seconds)

    def reset(self) -> None:
        """Clear injected faults, latency, holds and clock skew, OAuth2's too, and restore
        the OAuth2 token lifetime (the call records stay)."""
        self._faults.reset()
        self._oauth2_faults.reset()

    def clear_calls(self) -> None:
        """Empty both call records, STS and OAuth2."""
        self._calls.clear()
        self._oauth2_calls.clear()

    @property
    def calls(self) -> list[CallRecord]:
        """A snapshot of the recorded GetWebIdentityToken calls, oldest first."""
        return self._calls.records

    @property
    def call_count(self) -> int:
        return len(self._calls)

    @property
    def in_flight(self) -> int:
        """GetWebIdentityToken calls being answered right now (e.g. waiting out latency)."""
        return self._calls.in_flight

    def faults_state(self) -> dict[str, Any]:
        """The current fault and latency as JSON-ready data."""
        return self._faults.state()

    # -- discovery --------------------------------------------------------------------

    def openid_configuration(self) -> dict[str, Any]:
        claims = dict.fromkeys(TOKEN_CLAIMS + OAUTH2_CLAIMS)  # both, in order, once
        return keys.openid_configuration(
            self.issuer,
            self.jwks_url,
            SIGNING_ALGORITHMS,
            claims,
            token_endpoint=self.token_url,
            token_endpoint_auth_methods=AUTH_METHODS,
        )

    def jwks(self) -> dict[str, Any]:
        return keys.jwks(self._keys.values())


def serve(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    oauth2_clients: Mapping[str, str] | Iterable[OAuth2Client] | None = None,
) -> None:
    """Run an emulator in the foreground until Ctrl-C, after printing how to use it.

    The one secret printed is the demo client's, as an assignment to eval; the secrets
    of ``oauth2_clients`` are the caller's own and never printed.
    """
    registry = client_registry(oauth2_clients)
    with StsEmulator(host, port, oauth2_clients=registry.values()) as sts:
        lines = [
            f"authgw emulator listening on {sts.url} (STS, OAuth2, JWKS)",
            f"# issuer {sts.issuer}, JWKS {sts.jwks_url}",
            "# point boto3 / the AWS CLI at it with these environment variables:",
            f"AWS_ENDPOINT_URL_STS={sts.url}",
            f"AWS_REGION={DEMO_REGION}",
            f"AWS_DEFAULT_REGION={DEMO_REGION}",  # what boto3 itself reads
            f"AWS_ACCESS_KEY_ID={DEMO_ACCESS_KEY_ID}",
            f"AWS_SECRET_ACCESS_KEY={DEMO_SECRET_ACCESS_KEY}",
            "# OAuth2 client credentials (client_secret_basic or client_secret_post):",
            f"AUTHGW_OAUTH2_TOKEN_URL={sts.token_url}",
            f"# a SigV4 echo (checks signatures made with the key above): {sts.sigv4_url}/",
        ]
        if oauth2_clients is None:
            lines += [
                f"AUTHGW_OAUTH2_CLIENT_ID={DEMO_OAUTH2_CLIENT_ID}",
                f"AUTHGW_OAUTH2_CLIENT_SECRET={DEMO_OAUTH2_CLIENT_SECRET}",  # a demo value
            ]
        else:
            ids = ", ".join(registry) or "none"
            lines.append(f"# OAuth2 clients (secrets as given): {ids}")
        print("\n".join(lines), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
