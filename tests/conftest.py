"""Fixtures shared by the tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgw.emulator import StsEmulator
from tests.emulator_helpers import FIXED_NOW


@pytest.fixture(scope="session", autouse=True)
def no_proxy_env() -> Iterator[None]:
    """Every test talks to loopback: a proxy from the environment (boto3 and urllib honour
    HTTP_PROXY and friends) must not sit between a test and its own servers."""
    saved = {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
    for name in saved:
        del os.environ[name]
    yield
    os.environ.update(saved)


@pytest.fixture
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The host's AWS config and endpoint overrides stay out of the emulator calls."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def sts() -> Iterator[StsEmulator]:
    """A local STS emulator for the module."""
    emulator = StsEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def bare_aws_env(isolated_aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``isolated_aws_env``, and none of the host's credentials, region, retry settings or
    instance metadata either: a boto3 client sees only what the test gives it."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator(sts: StsEmulator) -> Iterator[StsEmulator]:
    """The module's emulator, with no fault or latency and an empty call record."""
    sts.reset()
    sts.clear_calls()
    yield sts
    sts.reset()


@pytest.fixture
def fixed_clock_emulator() -> Iterator[StsEmulator]:
    """An emulator of its own, for account 210987654321, whose clock stands at FIXED_NOW."""
    with StsEmulator(clock=lambda: FIXED_NOW, account="210987654321") as sts:
        yield sts


class _EagerTasksPolicy(asyncio.DefaultEventLoopPolicy):
    """New loops run tasks eagerly, as mitmproxy sets them up on Python 3.12+."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop


# Eager tasks exist from Python 3.12 on, where mitmproxy switches them on.
_TASK_FACTORIES = ["lazy_tasks"] + (
    ["eager_tasks"] if hasattr(asyncio, "eager_task_factory") else []
)


@pytest.fixture(params=_TASK_FACTORIES)
def task_factory(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test under asyncio's default task factory and (Python 3.12+) under eager
    tasks, where a task that never pauses has finished inside ``create_task()``."""
    if request.param == "lazy_tasks":
        yield request.param
        return
    saved = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_EagerTasksPolicy())
    try:
        yield request.param
    finally:
        asyncio.set_event_loop_policy(saved)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server mode on loopback: Secrets Manager and SSM for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_at_moto(moto_url: str, bare_aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3 in this process (and children given os.environ) talks to moto, nowhere else."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return moto_url
