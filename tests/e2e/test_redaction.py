"""The redaction audit ("Proof under load"): one full session, every output, one search.

A gateway runs with everything turned up (`termlog_verbosity=debug`, `flow_detail=4`,
a flow log, metrics) over hmac (env, file and literal secrets), static (file and env),
STS (the in-process emulator), a verify route (observe mode; clients with the right
secret, a drifted one, an expired token, and none), a failing STS route (502
transport), an upstream that answers 401, and a reload of the config file; /status
(the `authgw.status` document) is read before and after the reload, /metrics at the
end. Then every CLI verb runs against the same config and the live gateway. Then all
of it is searched for every credential in play: each secret, each token an upstream
received, each token a client sent, the static token values, the AWS secret keys,
and the tokens the test made for the CLI. Not only whole values are looked for: any
run of 35 or more characters of a secret, an opaque token or a JWT's signature
counts, so a truncated print is found too.

None may appear anywhere, except in the stdout of `authgw token HOST` (no
`--decode`), whose job is to print the token: that one stdout is checked to hold the
token and left out of the search (its stderr is searched).

Outputs searched, and their sizes in a typical run (2 cores):

    mitmdump output                              ~32 KB (debug log and flow_detail=4)
    flow log                                     ~7 KB (16 records)
    /status before the reload, after it          ~5 KB each
    /metrics                                     ~17 KB
    stdout and stderr of 24 CLI runs, 47 texts   ~18 KB together, none above 5.4 KB:
      check; token (its stderr only); token --decode for an hmac, an sts, a static,
      a failing and a verify-only route; decode TOKEN; decode -; verify --secret with
      env: (valid, drifted), config: and cmd:; verify --jwks with the emulator's
      issuer URL and with a JWKS file; drift over env/file/cmd/config (agree, differ,
      unreadable, a static token); status --url, status --url --json, status -c;
      sts-emulator --help; run --help

A failure lists the outputs that leaked with the fingerprint and kind of each
credential found there (never the value), then every output searched with its size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authgw.emulator import DEMO_SECRET_ACCESS_KEY, StsEmulator
from tests.e2e.clients import direct_request, proxy_request
from tests.e2e.harness import (
    REPO,
    Gateway,
    GatewayFactory,
    gateway_env,
    start_with_metrics,
)
from tests.e2e.helpers import (
    fingerprint,
    leaks,
    new_secret,
    read_flowlog,
    replace_file,
    verify_jwt,
    wait_for_records,
)
from tests.e2e.sts_helpers import closed_loopback_port, sts_gateway_env
from tests.e2e.upstreams import Upstream

UPSTREAMS = (
    "hmac_env",
    "hmac_file",
    "hmac_literal",
    "static_file",
    "static_env",
    "sts",
    "verify",
    "failing",
    "rejects",
)
STS_AUDIENCE = "https://audit.sts.example"
DYNAMIC_AUDIENCE = "http://127.0.0.1"  # `audience: dynamic` for http://127.0.0.1:PORT
LIFETIME = 300
VERBOSE = ["--set", "termlog_verbosity=debug", "--set", "flow_detail=4"]
CREDENTIAL_HEADERS = ("Authorization", "X-Client-Authorization")
CLI_TIMEOUT = 30.0
FRAGMENT = 24  # searched pieces overlap by half: any run of 35+ characters is found
PRINTED = "token hmac_env"  # the CLI run whose stdout is the token, by design


def client_jwt(secret: str, *, expires_in: float = LIFETIME) -> str:
    """A client's HS256 token for the verify route (unique: each has its own jti)."""
    now = int(time.time())
    claims = {
        "sub": "audit-client",
        "aud": DYNAMIC_AUDIENCE,
        "iat": now - 5,
        "exp": int(now + expires_in),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, "HS256", headers={"kid": fingerprint(secret)})


def fragments(value: str) -> set[str]:
    """`value`, and overlapping pieces of what makes it a credential: a JWT's signature,
    or all of any other value (a JWT's header and claims are printed decoded by design)."""
    part = value.rpartition(".")[2] if value.count(".") == 2 else value
    last = max(len(part) - FRAGMENT, 0)
    return {value, *(part[i : i + FRAGMENT] for i in range(0, last + 1, FRAGMENT // 2))}


class Credentials:
    """Every credential in play, each with a label that never holds its value."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}  # value -> label

    def add(self, label: str, value: str) -> str:
        assert len(value) >= FRAGMENT, f"{label}: too short to search for without false hits"
        self.labels.setdefault(value, label)
        return value

    def harvest(self, upstreams: Mapping[str, Upstream]) -> None:
        """Every credential header value the upstreams received."""
        for name, upstream in upstreams.items():
            for request in upstream.requests:
                for header in CREDENTIAL_HEADERS:
                    for value in request.header_values(header):
                        token = value.partition(" ")[2] or value
                        self.add(f"token received by upstream {name} ({header})", token)

    def received_by(self, upstream: str) -> set[str]:
        prefix = f"token received by upstream {upstream} "
        return {value for value, label in self.labels.items() if label.startswith(prefix)}

    def redact(self, text: str) -> str:
        """`text` with every credential replaced by its fingerprint (for failure messages)."""
        for value in sorted(self.labels, key=len, reverse=True):
            text = text.replace(value, f"<{fingerprint(value)}>")
        return text


@dataclass(frozen=True)
class Leak:
    output: str
    credential: str
    lines: tuple[str, ...]  # the output's lines that hold (a piece of) it

    def describe(self, label: str) -> str:
        return f"{self.output}: {fingerprint(self.credential)} ({label})"


def search(texts: Mapping[str, str], credentials: Iterable[str]) -> list[Leak]:
    """Every (output, credential) where the credential or a piece of it appears."""
    pieces: dict[str, str] = {}  # piece -> the credential it is part of
    for value in credentials:
        for piece in fragments(value):
            pieces.setdefault(piece, value)
    by_fingerprint = {fingerprint(piece): piece for piece in pieces}
    found: dict[tuple[str, str], set[str]] = {}
    for hit in leaks(texts, pieces):  # "output name: fingerprint of the piece"
        output, _, fp = hit.rpartition(": ")
        piece = by_fingerprint[fp]
        found.setdefault((output, pieces[piece]), set()).add(piece)
    return [
        Leak(
            output,
            value,
            tuple(line for line in texts[output].splitlines() if any(p in line for p in seen)),
        )
        for (output, value), seen in sorted(found.items())
    ]


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: Mapping[str, str], cwd: Path, stdin: str = "") -> CliRun:
    """`authgw ARGS` in this Python, as a user runs it; stdout and stderr kept apart."""
    done = subprocess.run(
        [sys.executable, "-m", "authgw.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


def start_gateway(
    factory: GatewayFactory,
    config: dict[str, Any],
    env: Mapping[str, str | None],
    extra_args: list[str] = (),  # type: ignore[assignment]
) -> tuple[Gateway, int]:
    """Start the audited gateway with metrics on a free loopback port: (gateway, port).
    ``config["metrics"]`` is set to that port (the test rewrites the config later)."""

    def make_config(port: int) -> str:
        config["metrics"] = f"127.0.0.1:{port}"
        return json.dumps(config, indent=2)

    return start_with_metrics(
        factory, make_config, env=env, extra_args=lambda port: [*VERBOSE, *extra_args]
    )


@pytest.fixture
def stack() -> Iterator[tuple[StsEmulator, dict[str, Upstream]]]:
    """The STS emulator and one upstream per route; none echoes what it received."""
    with ExitStack() as es, pytest.MonkeyPatch.context() as mp:
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            mp.delenv(var, raising=False)  # the CLI's STS and JWKS calls stay direct
        emulator = es.enter_context(StsEmulator())
        upstreams = {name: es.enter_context(Upstream()) for name in UPSTREAMS}
        for name, upstream in upstreams.items():
            if name == "rejects":
                challenge = 'Bearer error="invalid_token", error_description="audit"'
                upstream.respond(401, {"WWW-Authenticate": challenge}, "no\n")
            else:
                # The default echo would put the request headers into mitmdump's output.
                upstream.respond(200, {"Content-Type": "text/plain"}, "ok\n")
        yield emulator, upstreams


def test_no_secret_or_token_appears_in_any_output(
    stack: tuple[StsEmulator, dict[str, Upstream]],
    gateway_factory: GatewayFactory,
    tmp_path: Path,
) -> None:
    emulator, ups = stack
    creds = Credentials()
    hmac_env = creds.add("secret AUDIT_HMAC (env)", new_secret())
    hmac_file = creds.add("secret of hmac_file (file)", new_secret())
    literal = creds.add("secret of hmac_literal (a literal in the config)", new_secret())
    verify_secret = creds.add("secret AUDIT_VERIFY (env)", new_secret())
    drifted_secret = creds.add("drifted verify secret (file)", new_secret())
    static_value = creds.add("static token AUDIT_STATIC (env)", "opaque-" + new_secret())
    static_jwt = creds.add(
        "static token of static_file (file)",
        jwt.encode({"sub": "audit-static", "exp": int(time.time()) + 7200}, new_secret(), "HS256"),
    )
    aws_secret = creds.add("AWS secret access key (the test's dummy)", new_secret())
    creds.add("AWS secret access key (the emulator's demo)", DEMO_SECRET_ACCESS_KEY)

    files = {
        "hmac_file": tmp_path / "hmac_file.secret",
        "hmac_env copy": tmp_path / "hmac_env.copy",
        "drifted": tmp_path / "drifted.secret",
        "static": tmp_path / "static.token",
        "jwks": tmp_path / "jwks.json",
    }
    files["hmac_file"].write_text(hmac_file + "\n", encoding="utf-8")
    files["hmac_env copy"].write_text(hmac_env + "\n", encoding="utf-8")
    files["drifted"].write_text(drifted_secret, encoding="utf-8")
    files["static"].write_text(static_jwt + "\n", encoding="utf-8")
    files["jwks"].write_text(json.dumps(emulator.jwks()), encoding="utf-8")

    # ------------------------------------------------------------------ the gateway session
    def at(name: str) -> list[str]:
        return [f"127.0.0.1:{ups[name].port}"]

    def hmac(secret: Any, **token: Any) -> dict[str, Any]:
        return {"type": "hmac", "secret": secret, "lifetime": LIFETIME, **token}

    hmac_env_claims: dict[str, Any] = {"stackmon": "dummy"}
    failing_sts = {
        "type": "sts",
        "audience": [STS_AUDIENCE],
        "endpoint_url": f"http://127.0.0.1:{closed_loopback_port()}",
        "connect_timeout": 0.5,
        "max_attempts": 1,
    }
    config: dict[str, Any] = {
        "version": 1,
        "unmatched": "reject",
        "flowlog": str(tmp_path / "flows.jsonl"),
        "routes": [
            {
                "name": "hmac_env",
                "hosts": at("hmac_env"),
                "token": hmac({"env": "AUDIT_HMAC"}, audience="dynamic", claims=hmac_env_claims),
            },
            {
                "name": "hmac_file",
                "hosts": at("hmac_file"),
                "token": hmac({"file": str(files["hmac_file"])}, algorithm="HS512"),
            },
            {
                "name": "hmac_literal",
                "hosts": at("hmac_literal"),
                "token": hmac(literal, kid="none"),
            },
            {
                "name": "static_file",
                "hosts": at("static_file"),
                "token": {"type": "static", "value": {"file": str(files["static"])}},
            },
            {
                "name": "static_env",
                "hosts": at("static_env"),
                "token": {"type": "static", "value": {"env": "AUDIT_STATIC"}},
            },
            {
                "name": "sts",
                "hosts": at("sts"),
                "token": {"type": "sts", "audience": [STS_AUDIENCE]},
            },
            {
                "name": "verify",
                "hosts": at("verify"),
                "verify": {"secret": {"env": "AUDIT_VERIFY"}, "audience": "dynamic"},
            },
            {"name": "failing", "hosts": at("failing"), "token": failing_sts},
            {"name": "rejects", "hosts": at("rejects"), "token": hmac({"env": "AUDIT_HMAC"})},
        ],
    }
    env = {
        **sts_gateway_env(emulator.url, tmp_path),
        "AWS_SECRET_ACCESS_KEY": aws_secret,
        "AUDIT_HMAC": hmac_env,
        "AUDIT_VERIFY": verify_secret,
        "AUDIT_STATIC": static_value,
    }
    saved = tmp_path / "flows.mitm"  # -w: every flow, the last one written at shutdown
    gateway, metrics_port = start_gateway(gateway_factory, config, env, ["-w", str(saved)])
    assert gateway.config_path is not None
    flowlog = Path(config["flowlog"])

    def send(route: str, path: str, token: str | None = None, body: str | None = None) -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        method = "GET" if body is None else "POST"
        return proxy_request(gateway.port, method, ups[route].url + path, headers, body).status

    def to_verify(kind: str, token: str) -> str:
        return creds.add(f"token a client sent to verify ({kind})", token)

    mine = creds.add("token a client sent (opaque, replaced)", "client-" + new_secret())
    statuses = {
        "hmac_env": send("hmac_env", "/a/1", mine),
        "hmac_env cached": send("hmac_env", "/a/2", mine),
        "hmac_file": send("hmac_file", "/a/3", body='{"name": "audit"}'),
        "hmac_literal": send("hmac_literal", "/a/4"),
        "static_file": send("static_file", "/a/5"),
        "static_env": send("static_env", "/a/6", mine),
        "sts": send("sts", "/a/7"),
        "sts cached": send("sts", "/a/8"),
        "verify valid": send("verify", "/a/9", to_verify("valid", client_jwt(verify_secret))),
        "verify drifted": send("verify", "/a/10", to_verify("drifted", client_jwt(drifted_secret))),
        "verify expired": send(
            "verify", "/a/11", to_verify("expired", client_jwt(verify_secret, expires_in=-60))
        ),
        "verify missing": send("verify", "/a/12"),
        "failing": send("failing", "/a/13"),
        "rejects": send("rejects", "/a/14"),
    }
    assert statuses == {**dict.fromkeys(statuses, 200), "failing": 502, "rejects": 401}
    assert ups["failing"].count == 0
    gateway.wait_for_output(r"route rejects: upstream answered 401")
    status_before = direct_request(metrics_port, "GET", "/status", timeout=5).text

    # The hmac_env route changes: its cached token is dropped and a new one minted.
    hmac_env_claims["rev"] = 2
    replace_file(gateway.config_path, json.dumps(config, indent=2))
    gateway.wait_for_output(r"authgw: reloaded ", timeout=10)
    statuses = {
        "hmac_env reloaded": send("hmac_env", "/b/1", mine),
        "verify reloaded": send("verify", "/b/2", to_verify("late", client_jwt(verify_secret))),
    }
    assert statuses == dict.fromkeys(statuses, 200)
    assert {r["route"] for r in wait_for_records(flowlog, "/", 16)} == set(UPSTREAMS)
    status_after = direct_request(metrics_port, "GET", "/status", timeout=5).text
    metrics = direct_request(metrics_port, "GET", "/metrics", timeout=5).text
    assert 'authgw_verify_total{reason="bad_signature",result="invalid",route="verify"}' in metrics
    creds.harvest(ups)
    (sts_token,) = creds.received_by("sts")
    hmac_token = (ups["hmac_env"].last.header("Authorization") or "").partition(" ")[2]
    hmac_file_token = (ups["hmac_file"].last.header("Authorization") or "").partition(" ")[2]

    # ------------------------------------------------------------------ every CLI verb
    path = os.pathsep.join([str(REPO / "addons"), str(REPO)])
    cli_env = gateway_env({**env, "PYTHONPATH": path})
    cfg = str(gateway.config_path)
    foreign = creds.add(
        "RS256 token signed by a key outside the JWKS",
        jwt.encode(
            {"iss": emulator.issuer, "aud": STS_AUDIENCE, "exp": int(time.time()) + 300},
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "RS256",
            headers={"kid": "not-in-the-jwks"},
        ),
    )
    drifted = creds.add("drifted client token given to the CLI", client_jwt(drifted_secret))
    valid = creds.add("valid client token given to the CLI", client_jwt(verify_secret))
    metrics_url = f"http://127.0.0.1:{metrics_port}"

    def token(route: str, *more: str) -> list[str]:
        return ["token", f"127.0.0.1:{ups[route].port}", "-c", cfg, "--scheme", "http", *more]

    # label (never a credential) -> (argv, stdin, expected exit status)
    plan: dict[str, tuple[list[str], str, int]] = {
        "check": (["check", "-c", cfg], "", 0),
        PRINTED: (token("hmac_env"), "", 0),
        "token hmac_env --decode": (token("hmac_env", "--decode"), "", 0),
        "token sts --decode": (token("sts", "--decode"), "", 0),
        "token static_file --decode": (token("static_file", "--decode"), "", 0),
        "token failing --decode": (token("failing", "--decode"), "", 1),
        "token verify (verify-only route)": (token("verify"), "", 1),
        "decode TOKEN": (["decode", hmac_token], "", 0),
        "decode - (static token)": (["decode", "-"], static_jwt, 0),
        "verify - --secret env: (valid)": (
            ["verify", "-", "--secret", "env:AUDIT_VERIFY", "--audience", DYNAMIC_AUDIENCE],
            valid,
            0,
        ),
        "verify TOKEN --secret env: (drifted)": (
            ["verify", drifted, "--secret", "env:AUDIT_VERIFY"],
            "",
            1,
        ),
        "verify - --secret config: (hmac_env)": (
            ["verify", "-", "--secret", f"config:{cfg}#hmac_env", "--audience", DYNAMIC_AUDIENCE],
            hmac_token,
            0,
        ),
        "verify - --secret cmd: (hmac_file)": (
            ["verify", "-", "--secret", f"cmd:cat {files['hmac_file']}"],
            hmac_file_token,
            0,
        ),
        "verify - --jwks issuer URL (sts)": (
            ["verify", "-", "--jwks", emulator.url, "--audience", STS_AUDIENCE],
            sts_token,
            0,
        ),
        "verify - --jwks file (foreign key)": (
            ["verify", "-", "--jwks", str(files["jwks"])],
            foreign,
            1,
        ),
        "drift env/file/cmd/config (agree)": (
            [
                "drift",
                "env:AUDIT_HMAC",
                f"file:{files['hmac_env copy']}",
                f"cmd:cat {files['hmac_env copy']}",
                f"config:{cfg}#hmac_env",
            ],
            "",
            0,
        ),
        "drift env/file/config (differ)": (
            ["drift", "env:AUDIT_VERIFY", f"file:{files['drifted']}", f"config:{cfg}#verify"],
            "",
            1,
        ),
        "drift env/cmd (unreadable)": (
            ["drift", "env:AUDIT_HMAC", f"cmd:cat {tmp_path / 'no-such.secret'}"],
            "",
            2,
        ),
        "drift env/config (static token)": (
            ["drift", "env:AUDIT_STATIC", f"config:{cfg}#static_env"],
            "",
            0,
        ),
        "status --url": (["status", "--url", metrics_url], "", 0),
        "status --url --json": (["status", "--url", metrics_url, "--json"], "", 0),
        "status -c": (["status", "-c", cfg], "", 0),
        "sts-emulator --help": (["sts-emulator", "--help"], "", 0),
        "run --help": (["run", "--help"], "", 0),
    }
    runs = {
        label: cli(*argv, env=cli_env, cwd=tmp_path, stdin=stdin)
        for label, (argv, stdin, _) in plan.items()
    }
    expected = {label: code for label, (_, _, code) in plan.items()}
    assert {label: run.returncode for label, run in runs.items()} == expected, "\n".join(
        f"{label}: exit {run.returncode}\n{creds.redact(run.stderr)}"
        for label, run in runs.items()
        if run.returncode != expected[label]
    )
    # `authgw token HOST` prints the token, by design: it is that token, and only it.
    printed = creds.add("token printed by `authgw token hmac_env`", runs[PRINTED].stdout.strip())
    assert fingerprint(runs[PRINTED].stdout) == fingerprint(printed + "\n"), "more than a token"
    try:
        header, claims = verify_jwt(printed, hmac_env, "HS256", audience=DYNAMIC_AUDIENCE)
    except jwt.PyJWTError as e:
        raise AssertionError(f"`authgw {PRINTED}` printed {fingerprint(printed)}: {e}") from None
    assert (header["kid"], claims["rev"]) == (fingerprint(hmac_env), 2)
    # No `x in text` asserts on outputs: pytest would print the text, and it may hold a leak.
    said_drift = "(drift)" in runs["verify TOKEN --secret env: (drifted)"].stdout
    assert said_drift, "verify did not call the drifted client's token drift"
    said_differ = "DRIFT: 2 different secrets" in runs["drift env/file/config (differ)"].stdout
    assert said_differ, "drift did not see the drifted secret"

    # ------------------------------------------------------------------ config errors
    dup = creds.add("literal token given twice in a broken config", "dup-" + new_secret())
    broken = (
        "version: 1\nroutes:\n  - name: g\n    hosts: [g.example]\n    token:\n"
        f"      type: static\n      value: {dup}-a\n      value: {dup}-b\n"
    )
    broken_file = tmp_path / "broken.yaml"
    broken_file.write_text(broken, encoding="utf-8")
    start_code, start_output = gateway_factory.run_to_exit(broken, env=env)
    broken_check = cli("check", "-c", str(broken_file), env=cli_env, cwd=tmp_path)
    assert (start_code != 0, broken_check.returncode) == (True, 1)
    good_config = gateway.config_path.read_text(encoding="utf-8")
    replace_file(gateway.config_path, broken)  # the running gateway refuses it on reload
    gateway.wait_for_output(r"the new config is invalid; the running config stays", timeout=10)
    replace_file(gateway.config_path, good_config)
    gateway.wait_for_output(r"authgw: reloaded ", timeout=10)

    # ------------------------------------------------------------------ one flow in flight
    ups["hmac_env"].delay(30, "/inflight")
    in_flight = threading.Thread(
        target=lambda: _ignore_errors(lambda: send("hmac_env", "/inflight", mine)), daemon=True
    )
    in_flight.start()
    ups["hmac_env"].wait_for_count(len(ups["hmac_env"].requests) + 1, timeout=10)
    creds.harvest(ups)

    # ------------------------------------------------------------------ the search
    gateway_factory.stop_all()  # everything mitmdump prints, up to its exit; -w written
    creds.harvest(ups)
    texts = {
        "mitmdump output": gateway.output,
        "flow log": flowlog.read_text(encoding="utf-8"),
        "/status before reload": status_before,
        "/status after reload": status_after,
        "/metrics": metrics,
        "-w file (a flow in flight at shutdown)": saved.read_bytes().decode("latin-1"),
        "mitmdump start-up error (broken config)": start_output,
        "`authgw check` stdout (broken config)": broken_check.stdout,
        "`authgw check` stderr (broken config)": broken_check.stderr,
    }
    for label, run in runs.items():
        if label != PRINTED:
            texts[f"`authgw {label}` stdout"] = run.stdout
        texts[f"`authgw {label}` stderr"] = run.stderr
    # The search can find what it looks for, and looks where it should.
    assert [leak.output for leak in search({"stdout": runs[PRINTED].stdout}, [printed])]
    has_headers = "<authgw redacted sha256:" in texts["mitmdump output"]
    has_debug = "transports closed!" in texts["mitmdump output"]  # a debug-level line
    assert has_headers and has_debug, "mitmdump printed no flow_detail headers or debug lines"
    assert len(read_flowlog(flowlog)) in (16, 17)  # the flow in flight may be logged
    assert "/inflight" in texts["-w file (a flow in flight at shutdown)"], "no in-flight flow"

    found = search(texts, creds.labels)
    sizes = "\n".join(f"  {name}: {len(text)} bytes" for name, text in texts.items())
    listing = "\n".join(leak.describe(creds.labels[leak.credential]) for leak in found)
    assert not found, f"credentials shown:\n{listing}\noutputs searched:\n{sizes}"


def _ignore_errors(call: Any) -> None:
    """Run `call`; the gateway's shutdown may end it with a connection error."""
    try:
        call()
    except OSError:
        pass
