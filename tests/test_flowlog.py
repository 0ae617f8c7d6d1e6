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
