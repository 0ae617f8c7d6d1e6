"""Reading a secret from AWS Secrets Manager or SSM Parameter Store, with boto3.

Imported only for ``{aws_secretsmanager: ...}`` and ``{aws_ssm: ...}`` secrets. Clients
come from the default credential chain (botocore refreshes what needs refreshing);
the region is the reference's, else ``AWS_REGION``, else boto3's own chain, and
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_SECRETS_MANAGER``/``_SSM``) is honoured by
botocore. Errors say the AWS error code, never a value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from authgw import aws
from authgw.config import SecretRef
from authgw.sources.remote import ReadFailed

aws.quiet_sdk_loggers()  # a Secrets Manager or SSM response body is a secret

_clients: dict[tuple[str, str | None, float], Any] = {}
_lock = threading.Lock()


def _client(service: str, region: str | None, timeout: float) -> Any:
    key = (service, region, timeout)
    with _lock:
        client = _clients.get(key)
        if client is None:
            session: Any = boto3.session.Session(region_name=aws.region(region))
            client = session.client(
                service,
                config=botocore.config.Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"total_max_attempts": 2, "mode": "standard"},
                ),
            )
            _clients[key] = client
        return client


def fetcher(ref: SecretRef) -> Callable[[], bytes]:
    if ref.kind == "aws_secretsmanager":
        return lambda: _guarded("Secrets Manager", lambda: _secrets_manager(ref))
    if ref.kind == "aws_ssm":
        return lambda: _guarded("SSM", lambda: _ssm(ref))
    raise ValueError(f"not an AWS secret: {ref.kind}")


def _guarded(service: str, read: Callable[[], bytes]) -> bytes:
    try:
        return read()
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code") or "ClientError"
        raise ReadFailed(f"{service} answered {code}") from None
    except botocore.exceptions.NoRegionError:
        raise ReadFailed(f"{service}: no AWS region (set region: or AWS_REGION)") from None
    except botocore.exceptions.NoCredentialsError:
        raise ReadFailed(f"{service}: no AWS credentials") from None
    except (botocore.exceptions.BotoCoreError, OSError) as e:
        raise ReadFailed(f"{service} unreachable ({type(e).__name__})") from None


def _secrets_manager(ref: SecretRef) -> bytes:
    answer = _client("secretsmanager", ref.region, ref.timeout).get_secret_value(SecretId=ref.name)
    if ref.field is None:
        text = answer.get("SecretString")
        value = text.encode() if isinstance(text, str) else answer.get("SecretBinary")
        if not value:
            raise ReadFailed("Secrets Manager: the secret is empty")
        return bytes(value)
    try:
        fields = json.loads(answer.get("SecretString") or "")
    except ValueError:
        raise ReadFailed("Secrets Manager: the secret is not JSON, so it has no fields") from None
    value = fields.get(ref.field) if isinstance(fields, dict) else None
    if not isinstance(value, str) or not value:
        raise ReadFailed(f"Secrets Manager: the secret has no string field {ref.field!r}")
    return value.encode()


def _ssm(ref: SecretRef) -> bytes:
    answer = _client("ssm", ref.region, ref.timeout).get_parameter(
        Name=ref.name, WithDecryption=True
    )
    value = answer.get("Parameter", {}).get("Value")
    if not isinstance(value, str) or not value:
        raise ReadFailed("SSM: the parameter is empty")
    return value.encode()
