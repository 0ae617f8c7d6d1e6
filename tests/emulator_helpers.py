"""Driving the STS emulator in tests: a boto3 client for it, plain HTTP, its errors."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from authgw.emulator import StsEmulator

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


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()
