"""authgw status: a running gateway's status document, shown as tables or JSON."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from authgw import cli
from tests.cli_helpers import write

pytestmark = pytest.mark.usefixtures("isolated_aws_env")


STATUS_DOC = {
    "now": "2026-11-22T05:00:00+00:00",
    "routes": [
        {
            "name": "dash",
            "source": "hmac",
            "secret_fingerprint": "sha256:0123456789ab",
            "last_error": None,
        },
        {
            "name": "gw",
            "source": "static",
            "secret_fingerprint": "sha256:ba9876543210",
            "token_expires_at": "2026-11-22T06:00:00+00:00",
            "flag": "expires_within_a_day",
            "last_error": {"error_class": "expired"},
        },
    ],
    "cache": {"entries": 1, "max_entries": 1024},
    "tokens": [
        {
            "route": "dash",
            "audience": ["https://a.example"],
            "kid": "sha256:0123456789ab",
            "expires_at": "2026-11-22T05:10:00+00:00",
            "seconds_left": 600,
        }
    ],
    "backoff": [{"route": "gw", "audience": [], "error_class": "expired", "retry_in": 1.5}],
}


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(STATUS_DOC).encode() if self.path == "/status" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_status_prints_routes_and_tokens(
    status_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--url", status_server]) == 0
    out = capsys.readouterr().out
    assert re.search(r"dash\s+hmac\s+sha256:0123456789ab", out)
    assert re.search(r"gw\s+static.+\(expires_within_a_day\)\s+expired", out)
    assert "cached tokens: 1 of at most 1024" in out
    assert re.search(
        r"dash\s+https://a.example\s+sha256:0123456789ab\s+2026-11-22T05:10:00"
        r"\+00:00\s+10 min",
        out,
    )
    assert "backing off: gw : expired, next try in 1.5 s" in out
    assert cli.main(["status", "--url", status_server + "/status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS_DOC


def test_status_takes_the_address_from_the_config(
    status_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = status_server.rsplit(":", 1)[1]
    config = write(tmp_path, f"version: 1\nmetrics: 127.0.0.1:{port}\nroutes: []\n")
    assert cli.main(["status", "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["max_entries"] == 1024


def test_status_unreachable_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert cli.main(["status", "--url", f"http://127.0.0.1:{port}", "--timeout", "2"]) == 2
    assert "cannot read" in capsys.readouterr().err
