"""Fixtures for the end-to-end tests: certificates, upstreams, mitmdump gateways.

Every test under tests/e2e is marked `e2e` (select with `-m e2e`, skip with `-m "not e2e"`).
When a test fails, the output of each gateway it started is attached to the report,
with anything shaped like a token or a secret replaced by its fingerprint: a failing
redaction test must not print what it caught.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from authgw.tokens import fingerprint
from scripts.gencerts import CertPaths, generate
from tests.e2e.harness import GatewayFactory
from tests.e2e.upstreams import Upstream, server_tls_context

E2E_DIR = Path(__file__).resolve().parent
_FACTORY_KEY = pytest.StashKey[GatewayFactory]()
_OUTPUT_TAIL = 200  # lines of each gateway's output shown for a failed test
# JWTs, long hex (the tests' secrets) and long base64url runs (static tokens).
_CREDENTIAL_SHAPES = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*|[0-9a-fA-F]{32,}|[\w-]{40,}")


def report_output(request: pytest.FixtureRequest, factory: GatewayFactory) -> None:
    """A failing test's report shows the output of ``factory``'s gateways (scrubbed)."""
    request.node.stash[_FACTORY_KEY] = factory


def scrub(text: str) -> str:
    """``text`` with credential-shaped runs replaced by ``<sha256:...>``."""
    return _CREDENTIAL_SHAPES.sub(lambda m: f"<{fingerprint(m.group())}>", text)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    factory = item.stash.get(_FACTORY_KEY, None)
    if factory is None or not report.failed:
        return
    for n, gateway in enumerate(factory.gateways, 1):
        tail = scrub("\n".join(gateway.lines[-_OUTPUT_TAIL:]))
        report.sections.append((f"mitmdump #{n} output ({gateway.log_path})", tail))


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """A local CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    return generate(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A recording plain-http upstream on 127.0.0.1."""
    with Upstream() as server:
        yield server


@pytest.fixture
def tls_upstream(certs: CertPaths) -> Iterator[Upstream]:
    """A recording https upstream on 127.0.0.1 presenting the `certs` server certificate."""
    with Upstream(tls=server_tls_context(certs)) as server:
        yield server


@pytest.fixture
def gateway_factory(
    request: pytest.FixtureRequest, tmp_path: Path, certs: CertPaths
) -> Iterator[GatewayFactory]:
    """`gateway_factory(config_text, *, env=None, extra_args=(), script=ADDON_SCRIPT)`
    starts a mitmdump that trusts `certs.ca_cert` upstream; all are stopped afterwards.
    """
    factory = GatewayFactory(tmp_path, upstream_ca=certs.ca_cert)
    report_output(request, factory)
    try:
        yield factory
    finally:
        factory.stop_all()
