"""Fixtures shared by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgw.sts_emulator import StsEmulator


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
