"""Secrets read from where they are kept (authgw.sources.remote, aws_secrets): a command,
and AWS Secrets Manager and SSM through moto's server on loopback."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from authgw.config import SecretRef
from authgw.sources.remote import ReadFailed, RemoteSecret, SecretStore, fetcher, run_command
from authgw.tokens import MissingSecret, fingerprint
from tests.fakes import FakeClock

SECRET = "remote-secret-value-" + uuid.uuid4().hex
ROTATED = "rotated-secret-value-" + uuid.uuid4().hex


_OPENED: list[RemoteSecret | SecretStore] = []


@pytest.fixture(autouse=True)
def _close_what_the_test_opened() -> Iterator[None]:
    """No secret of a finished test reads on (or logs at interpreter exit)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def remote(ref: SecretRef, clock: FakeClock) -> RemoteSecret:
    secret = RemoteSecret(ref, fetcher(ref), monotonic=clock)
    _OPENED.append(secret)
    secret.start(10)
    return secret


def reread(secret: RemoteSecret) -> bytes:
    """Read once (starting the re-read that is due), wait for it, read again."""
    try:
        secret.read()
    except MissingSecret:
        pass
    assert secret.wait(10)
    return secret.read()


def test_a_command_is_reread_on_its_interval_and_a_change_is_seen(tmp_path: Path) -> None:
    clock, kept = FakeClock(0), tmp_path / "kept"
    kept.write_text(SECRET + "\n")
    secret = remote(SecretRef(kind="cmd", name=f"cat {kept}", refresh=60), clock)
    assert secret.read() == SECRET.encode()
    kept.write_text(ROTATED + "\n")
    clock.advance(30)
    assert secret.read() == SECRET.encode()  # not due yet: no re-read
    clock.advance(31)
    assert reread(secret) == ROTATED.encode()
    assert secret.fingerprint() == fingerprint(ROTATED)


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("sleep 5", "did not finish within 0.5 s"),
        (f"echo {SECRET}; echo oops >&2; exit 3", "exited with status 3: oops"),
        ("true", "printed nothing"),
    ],
)
def test_a_command_that_fails_says_why_without_its_output(command: str, why: str) -> None:
    secret = remote(SecretRef(kind="cmd", name=command, timeout=0.5), FakeClock(0))
    with pytest.raises(MissingSecret) as info:
        secret.read()
    assert why in str(info.value) and SECRET not in str(info.value)
    assert why in (secret.status()["last_error"] or "")


def test_a_failed_reread_keeps_the_last_good_value(tmp_path: Path) -> None:
    clock, kept = FakeClock(0), tmp_path / "kept"
    kept.write_text(SECRET)
    secret = remote(SecretRef(kind="cmd", name=f"cat {kept}", refresh=10), clock)
    kept.unlink()
    clock.advance(11)
    assert reread(secret) == SECRET.encode()
    status = secret.status()
    assert "exited with status 1" in (status["last_error"] or "")
    assert status["value_age"] is not None
    kept.write_text(ROTATED)
    clock.advance(6)  # after a failure it tries again within RETRY_AFTER_FAILURE
    assert reread(secret) == ROTATED.encode() and secret.status()["last_error"] is None


def test_until_a_first_read_succeeds_the_secret_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, kept = FakeClock(0), tmp_path / "later"
    secret = remote(SecretRef(kind="cmd", name=f"cat {kept}", refresh=300), clock)
    with pytest.raises(MissingSecret):
        secret.read()
    kept.write_text(SECRET)
    clock.advance(6)
    assert reread(secret) == SECRET.encode()
    # The log said the read failed; it says the secret is there now, by fingerprint.
    assert f"read again ({fingerprint(SECRET)})" in caplog.text and SECRET not in caplog.text


def test_an_upstream_rejection_rereads_at_once(tmp_path: Path) -> None:
    clock, kept = FakeClock(0), tmp_path / "kept"
    kept.write_text(SECRET)
    secret = remote(SecretRef(kind="cmd", name=f"cat {kept}", refresh=3600), clock)
    kept.write_text(ROTATED)
    secret.refresh_soon()
    assert secret.wait(10) and secret.read() == ROTATED.encode()


def test_the_store_shares_one_reader_per_reference(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(SECRET)
    store = SecretStore()
    _OPENED.append(store)
    ref = SecretRef(kind="cmd", name=f"cat {tmp_path / 'k'}")
    assert store.reader(ref) is store.reader(ref)
    assert store.reader(SecretRef(kind="env", name="X")) is not store.reader(
        SecretRef(kind="env", name="X")
    )


# -- AWS, through moto ---------------------------------------------------------------------


def test_secrets_manager_string_field_and_rotation(aws_at_moto: str) -> None:
    sm = boto3.client("secretsmanager")
    name = f"authgw/{uuid.uuid4().hex}"
    sm.create_secret(Name=name, SecretString=SECRET)
    clock = FakeClock(0)
    whole = remote(SecretRef(kind="aws_secretsmanager", name=name, refresh=60), clock)
    assert whole.read() == SECRET.encode()
    sm.put_secret_value(SecretId=name, SecretString=ROTATED)
    clock.advance(61)
    assert reread(whole) == ROTATED.encode()

    sm.create_secret(Name=name + "-json", SecretString=json.dumps({"hmac": SECRET, "n": 1}))
    field = remote(SecretRef(kind="aws_secretsmanager", name=name + "-json", field="hmac"), clock)
    assert field.read() == SECRET.encode()
    missing = remote(SecretRef(kind="aws_secretsmanager", name=name + "-json", field="n"), clock)
    with pytest.raises(MissingSecret, match="no string field 'n'"):
        missing.read()


def test_ssm_decrypts_and_a_missing_parameter_is_its_error_code(aws_at_moto: str) -> None:
    ssm = boto3.client("ssm")
    name = f"/authgw/{uuid.uuid4().hex}"
    ssm.put_parameter(Name=name, Value=SECRET, Type="SecureString")
    assert remote(SecretRef(kind="aws_ssm", name=name), FakeClock(0)).read() == SECRET.encode()
    nowhere = remote(SecretRef(kind="aws_ssm", name=name + "-nope"), FakeClock(0))
    with pytest.raises(MissingSecret, match="SSM answered ParameterNotFound"):
        nowhere.read()


def test_a_command_that_times_out_is_ended_with_its_children() -> None:
    import subprocess

    marker = f"{uuid.uuid4().int % 1000 + 30}.{uuid.uuid4().int % 1000}"  # a unique sleep
    with pytest.raises(ReadFailed, match="did not finish"):
        run_command(f"sleep {marker}; echo late", 0.3)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the command's children outlived its timeout"


def test_401s_reread_at_most_once_per_few_seconds(tmp_path: Path) -> None:
    clock, kept = FakeClock(0), tmp_path / "kept"
    kept.write_text(SECRET)
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        return kept.read_bytes()

    secret = RemoteSecret(SecretRef(kind="cmd", name="x", refresh=3600), fetch, monotonic=clock)
    _OPENED.append(secret)
    secret.start(5)
    for _ in range(10):
        secret.refresh_soon()
        secret.wait(5)
    assert len(calls) == 2  # the first read, and one re-read for ten 401s


def test_a_closed_secret_starts_no_read_and_arms_no_timer(tmp_path: Path) -> None:
    clock, kept, reads = FakeClock(0), tmp_path / "kept", tmp_path / "reads"
    kept.write_text(SECRET + "\n")
    ref = SecretRef(kind="cmd", name=f"echo x >> {reads}; cat {kept}", refresh=60)
    secret = remote(ref, clock)
    assert secret.read() == SECRET.encode() and secret.wait(10)
    secret.close()
    clock.advance(3600)  # long due: an open secret would start a read here
    assert secret.read() == SECRET.encode()  # the last value, and no read started for it
    assert secret.wait(0)
    assert reads.read_text().count("x") == 1


def test_a_closed_store_closes_its_secrets_and_reads_afresh_after() -> None:
    store = SecretStore()
    _OPENED.append(store)
    ref = SecretRef(kind="cmd", name=f"echo {SECRET}", refresh=60)
    secret = store.reader(ref)
    assert isinstance(secret, RemoteSecret) and secret.wait(10)
    store.close()
    assert secret._closed  # what close() promises
    assert store.reader(ref) is not secret


def test_closing_a_secret_ends_its_command_under_way(tmp_path: Path) -> None:
    """The route was dropped (or the gateway stops) while its command runs: the command's
    whole session is killed, not left to run on after its owner."""
    started = tmp_path / "started"
    ref = SecretRef(kind="cmd", name=f"echo $$ > {started}; sleep 300; echo x", timeout=600)
    secret = RemoteSecret(ref, fetcher(ref), monotonic=FakeClock(0))
    _OPENED.append(secret)
    secret.start(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (started.exists() and started.read_text().strip()):
        time.sleep(0.01)
    pid = int(started.read_text())  # the shell's: its session is the command's group
    assert _alive_in_group(pid)
    secret.close()
    assert secret.wait(10)  # the read ended: its command is gone
    assert _alive_in_group(pid) == []
    with pytest.raises(MissingSecret):
        secret.read()


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of the process group that still run (a killed one may linger as a
    zombie until init reaps it)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive
