"""What the AWS-backed parts share (authgw.aws): region fallback, quiet SDK loggers."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from authgw import aws


def test_region_is_the_configured_one_else_aws_region_else_botos_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert aws.region("us-west-2") == "us-west-2"
    assert aws.region(None) == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "")
    assert aws.region(None) is None  # boto3 then reads AWS_DEFAULT_REGION or the profile


def test_quiet_sdk_loggers_stop_at_info() -> None:
    aws.quiet_sdk_loggers()
    for name in ("botocore", "boto3", "urllib3"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)


def test_importing_it_imports_no_aws_sdk() -> None:
    code = "import sys, authgw.aws; print(sorted({'boto3', 'botocore'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
