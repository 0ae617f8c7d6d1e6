"""Driving the emulator in tests: a boto3 client for its STS, token requests for its
OAuth2 endpoint, plain HTTP, its errors, and verifying what it issues."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import quote_plus, urlencode

import boto3
import jwt
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from authgw.emulator import DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET, StsEmulator

# botocore's `max_attempts` counts retries (1 = two attempts); `total_max_attempts` counts calls.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
FIXED_NOW = 1_700_000_000.75

Client = Any  # boto3's STS client; its stubs are optional


def make_client(
    sts: StsEmulator, config: Config | None = None, region: str = "us-east-1"
) -> Client:
    return boto3.session.Session().client(
        "sts",
        region_name=region,
        endpoint_url=sts.url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy",
        config=config,
    )


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as a client saw it."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_answer(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as e:
        with e:
            return Answer(e.code, e.headers, e.read())


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    answer = http_answer(method, url, body, headers)
    return answer.status, answer.body


def post_json(url: str, payload: object) -> tuple[int, Any]:
    status, body = http(
        "POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    return status, json.loads(body)


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- OAuth2 --------------------------------------------------------------------------------

DEMO_CLIENT = (DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET)
GRANT = (("grant_type", "client_credentials"),)
FORM_TYPE = "application/x-www-form-urlencoded"


def basic_auth(client_id: str, secret: str) -> str:
    """RFC 6749 2.3.1: id and secret form-urlencoded, joined by a colon, then Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def token_request(
    emulator: StsEmulator,
    fields: Sequence[tuple[str, str]] | Mapping[str, str] = GRANT,
    *,
    basic: tuple[str, str] | None = DEMO_CLIENT,
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST ``fields`` form-encoded to the token URL, as ``basic`` (None: no header)."""
    sent = {"Content-Type": FORM_TYPE}
    if basic is not None:
        sent["Authorization"] = basic_auth(*basic)
    sent.update(headers or {})
    return http_answer("POST", emulator.token_url, urlencode(fields).encode(), sent)


def verify_token(
    token: str,
    emulator: StsEmulator,
    audience: str | None = None,
    *,
    algorithms: Sequence[str] = ("RS256", "ES384"),
    require: Sequence[str] = ("iss", "sub", "iat", "exp", "jti"),
    check_times: bool = True,
) -> dict[str, Any]:
    """Verify like a relying party: key from the JWKS, then signature, iss, aud (if given)
    and times; ``require`` names the claims that must be there."""
    signing_key = jwt.PyJWKClient(emulator.jwks_url, timeout=5).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key,
        algorithms=list(algorithms),
        audience=audience,
        issuer=emulator.issuer,
        options={
            "require": list(require),
            "verify_aud": audience is not None,
            "verify_exp": check_times,
            "verify_iat": check_times,
            "verify_nbf": check_times,
        },
    )
    return claims


def verify_access_token(
    token: str, emulator: StsEmulator, audience: str | None = None
) -> dict[str, Any]:
    """``verify_token`` for an OAuth2 access token: RS256 only."""
    return verify_token(token, emulator, audience, algorithms=("RS256",))


# -- the emulator in the foreground ---------------------------------------------------------------

#: What ``serve()`` prints for boto3, and the last lines of its banner.
STS_ENV_NAMES = frozenset(
    {
        "AWS_ENDPOINT_URL_STS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
)
_BANNER_ENDS = ("AUTHGW_OAUTH2_CLIENT_SECRET=", "# OAuth2 clients")


@contextmanager
def serving(*python_args: str) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Run ``python ARGS``, an emulator in the foreground; yield the variables its banner
    assigns and the banner's lines; then Ctrl-C it, which must end it with status 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, *python_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith(_BANNER_ENDS):
            line = process.stdout.readline()
            assert line, f"the emulator ended before its banner did: {lines}"
            lines.append(line.rstrip("\n"))
        settings = dict(line.split("=", 1) for line in lines if "=" in line and "#" not in line)
        yield settings, lines
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=5)
