from __future__ import annotations

import json
from pathlib import Path

import pytest

from authgw.flowlog import FIELDS, FlowLog, FlowRecord, make_line
from tests.contract import FLOWLOG_FIELDS


def line(record: FlowRecord, path: str = "/v1/x?access_token=secret-in-query") -> dict[str, object]:
    return json.loads(
        make_line(
            record,
            ts=1_800_000_000.25,
            client="127.0.0.1:5000",
            method="POST",
            scheme="https",
            host="api.example.com",
            port=443,
            path=path,
            status=200,
            upstream_ms=12.3456,
        )
    )


def test_a_record_has_exactly_the_contract_fields() -> None:
    assert set(FIELDS) == FLOWLOG_FIELDS
    assert set(line(FlowRecord())) == FLOWLOG_FIELDS


def test_values_are_rounded_and_the_query_is_left_out() -> None:
    record = FlowRecord(
        route="dash",
        action="injected",
        token_source="hmac",
        kid="sha256:ab",
        audience=("https://a",),
        token_expires_in=299.96,
        token_ms=0.12345,
        headers_set=["Authorization"],
    )
    got = line(record)
    assert got["ts"] == "2027-01-15T08:00:00.250+00:00"
    assert got["path"] == "/v1/x" and "secret-in-query" not in json.dumps(got)
    assert got["audience"] == ["https://a"] and got["token_expires_in"] == 300.0
    assert got["token_ms"] == 0.123 and got["upstream_ms"] == 12.346
    assert line(FlowRecord())["audience"] is None


def test_flow_log_appends_lines_and_stops_after_close(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text('{"earlier": true}\n')
    log = FlowLog(path)
    log.write('{"a": 1}')
    log.close()
    log.write('{"b": 2}')  # after close: dropped, not an error
    assert path.read_text().splitlines() == ['{"earlier": true}', '{"a": 1}']


def test_an_unwritable_path_raises_at_open(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        FlowLog(tmp_path / "missing-dir" / "flows.jsonl")


@pytest.mark.parametrize("rotate", ["moved", "removed"])
def test_the_flow_log_follows_rotation(tmp_path: Path, rotate: str) -> None:
    """logrotate moves (or removes) the file: the next record goes to a new file at the
    configured path, not into the moved one."""
    path = tmp_path / "flows.jsonl"
    log = FlowLog(path)
    log.write('{"n":1}')
    if rotate == "moved":
        path.rename(tmp_path / "flows.jsonl.1")
    else:
        path.unlink()
    log.write('{"n":2}')
    log.write('{"n":3}')
    log.close()
    assert path.read_text() == '{"n":2}\n{"n":3}\n'
    if rotate == "moved":
        assert (tmp_path / "flows.jsonl.1").read_text() == '{"n":1}\n'


def test_a_truncated_flow_log_is_written_on(tmp_path: Path) -> None:
    """copytruncate keeps the file: records go on at its (new) end."""
    path = tmp_path / "flows.jsonl"
    log = FlowLog(path)
    log.write('{"n":1}')
    path.write_text("")
    log.write('{"n":2}')
    log.close()
    assert path.read_text() == '{"n":2}\n'


def test_a_flow_log_that_cannot_be_reopened_comes_back_once_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rotation left something at the path that cannot be opened: records are dropped
    (said once), and once the path works again the next try after RETRY_AFTER writes."""
    now = [0.0]
    path = tmp_path / "flows.jsonl"
    log = FlowLog(path, monotonic=lambda: now[0])
    log.write('{"n":1}')
    path.rename(tmp_path / "flows.jsonl.1")
    path.mkdir()  # not a file: the reopen fails
    log.write('{"n":2}')
    log.write('{"n":3}')
    path.rmdir()
    log.write('{"n":4}')  # within RETRY_AFTER: not tried yet
    now[0] += FlowLog.RETRY_AFTER
    log.write('{"n":5}')
    log.close()
    assert path.read_text() == '{"n":5}\n'
    assert caplog.text.count("write failed") == 1 and "writing again" in caplog.text
