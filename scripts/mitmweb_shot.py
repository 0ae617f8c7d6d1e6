"""A screenshot of mitmweb showing the flows the gateway annotated.

    python -m scripts.mitmweb_shot                  # writes ./mitmweb-flows.png
    python -m scripts.mitmweb_shot --out docs/mitmweb-flows.png   # the README's picture

The committed picture is replaced only when asked for (``--out docs/...``).

It starts four loopback upstreams and mitmweb with the gateway on a generated config:
`api` (a static token), `dashboard` (an HMAC JWT), `idp` (OAuth2 from a token endpoint
on a closed loopback port: 502 token unavailable) and `unmatched: reject` (a fourth
host gets 403). It sends one request to each through mitmweb's proxy, then headless
Chromium (Debian's `chromium`) renders mitmweb's UI, with the comment column in the
flow list and the `dashboard` flow's Comment tab open, and saves a screenshot. It prints
Chromium's command and the output path.

Everything listens on and connects to 127.0.0.1, every wait has a deadline, and every
process it starts is stopped before it exits. tests/e2e/test_mitmweb_browser.py uses
the same pieces (Mitmweb, chromium_command, run_chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from mitmproxy.version import VERSION

from scripts.launcher import Mitmdump
from scripts.loopback import free_port
from tests.e2e.clients import proxy_request
from tests.e2e.harness import ADDON_SCRIPT, gateway_env
from tests.e2e.upstreams import Upstream

MITMWEB = (sys.executable, "-c", "from mitmproxy.tools.main import mitmweb; mitmweb()")
# mitmweb asks for a password (or a token it prints) from mitmproxy 11.1 on; the UI and
# its API take it as `?token=` once, then a cookie.
WEB_AUTH = tuple(int(x) for x in VERSION.split(".")[:2]) >= (11, 1)
COMMENT_COLUMNS = ("path", "method", "status", "comment")

# Headless, no sandbox (root in a container), and nothing that calls home: loopback only.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
)
RENDER_BUDGET_MS = 5000  # virtual time for mitmweb's React app to load and draw the flows
CHROMIUM_TIMEOUT = 60.0
START_TIMEOUT = 30.0
OUT = Path("mitmweb-flows.png")  # in the working directory, not over the committed one


def find_chromium() -> str | None:
    """Debian's chromium on PATH (or /usr/bin/chromium); None when it is not installed."""
    found = shutil.which("chromium")
    if found is None and os.access("/usr/bin/chromium", os.X_OK):
        found = "/usr/bin/chromium"
    return found


def chromium_command(binary: str, profile: Path, url: str, *extra: str) -> list[str]:
    """Headless chromium with a fresh profile `profile` opening `url`; `extra` e.g.
    `--dump-dom` or `--screenshot=PATH`."""
    return [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        *extra,
        url,
    ]


def run_chromium(argv: Sequence[str], timeout: float = CHROMIUM_TIMEOUT) -> str:
    """Run chromium to its end and return its stdout; RuntimeError if it fails or overruns.

    It runs in a session of its own, and the whole session is killed when it overruns,
    so no renderer or zygote process outlives the call.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"chromium did not finish within {timeout:g}s") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers left behind by a finished run
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        tail = "\n".join(err.splitlines()[-20:])
        raise RuntimeError(f"chromium exited with {proc.returncode}:\n{tail}")
    return out


def _proxy_port(line: str) -> list[int] | None:
    marker = "proxy listening at "
    if marker not in line:
        return None
    return [int(line.rsplit(":", 1)[1].rstrip(". \n"))]


class Mitmweb:
    """mitmweb with the gateway on `config` (JSON or YAML text), in directory `workdir`.

    `env` is added to the gateway's environment; `columns` is mitmweb's `web_columns`
    (empty: its default). Use as a context manager: started on entry, stopped on exit.
    """

    def __init__(
        self,
        config: str,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        columns: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.web_port = free_port()
        # A port picked here, not by the OS: mitmweb's status bar shows the option's value.
        self.proxy_port = free_port()
        self.password = "authgw-" + secrets.token_hex(12)
        config_path = workdir / "gateway.yaml"
        config_path.write_text(config, encoding="utf-8")
        argv = [
            *MITMWEB,
            "-s",
            str(ADDON_SCRIPT),
            "--set",
            f"authgw_config={config_path}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(self.proxy_port),
            "--set",
            f"confdir={workdir / 'confdir'}",
            "--set",
            "web_open_browser=false",
            "--set",
            "web_host=127.0.0.1",
            "--set",
            f"web_port={self.web_port}",
            # A sequence option takes one --set per item.
            *(arg for column in columns for arg in ("--set", f"web_columns={column}")),
            *(["--set", f"web_password={self.password}"] if WEB_AUTH else []),
        ]
        self.process = Mitmdump(argv, env=gateway_env(env), cwd=workdir)

    def __enter__(self) -> Mitmweb:
        try:
            self.process.start(START_TIMEOUT, ready=_proxy_port)
            self.process.wait_for_output(r"[Ww]eb server listening", timeout=15)
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.stop()

    def url(self, fragment: str = "/flows") -> str:
        """The UI's address, logging in with the password (mitmproxy >= 11.1)."""
        query = f"?token={self.password}" if WEB_AUTH else ""
        return f"http://127.0.0.1:{self.web_port}/{query}#{fragment}"

    def flows(self) -> list[dict[str, Any]]:
        """mitmweb's flow list, from its JSON API."""
        query = f"?token={self.password}" if WEB_AUTH else ""
        url = f"http://127.0.0.1:{self.web_port}/flows{query}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as r:
            flows: list[dict[str, Any]] = json.load(r)
            return flows


def shot_config(api: Upstream, dashboard: Upstream, idp: Upstream) -> str:
    def at(upstream: Upstream) -> list[str]:
        return [f"127.0.0.1:{upstream.port}"]

    routes = [
        {
            "name": "api",
            "hosts": at(api),
            "token": {"type": "static", "value": {"env": "SHOT_STATIC"}},
        },
        {
            "name": "dashboard",
            "hosts": at(dashboard),
            "token": {"type": "hmac", "secret": {"env": "SHOT_SECRET"}, "lifetime": 300},
        },
        {
            "name": "idp",
            "hosts": at(idp),
            "token": {
                "type": "oauth2",
                # Nothing listens there: the fetch fails and the gateway answers 502.
                "token_url": f"http://127.0.0.1:{free_port()}/oauth2/token",
                "client_id": "shot-client",
                "client_secret": "shot-client-secret",
                "timeout": 2,
            },
        },
    ]
    return json.dumps({"version": 1, "unmatched": "reject", "routes": routes})


def take(out: Path) -> list[str]:
    """Run it all and write the screenshot to `out`; returns Chromium's command."""
    binary = find_chromium()
    if binary is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
    env = {
        "SHOT_STATIC": "shot-static-" + secrets.token_hex(16),
        "SHOT_SECRET": secrets.token_hex(32),
    }
    with (
        tempfile.TemporaryDirectory(prefix="mitmweb-shot-") as tmp,
        Upstream() as api,
        Upstream() as dashboard,
        Upstream() as idp,
        Upstream() as other,
    ):
        workdir = Path(tmp)
        with Mitmweb(
            shot_config(api, dashboard, idp), workdir, env=env, columns=COMMENT_COLUMNS
        ) as web:
            for upstream, path in [
                (api, "/v1/orders"),
                (dashboard, "/status"),
                (api, "/v1/orders/42"),
                (idp, "/me"),
                (other, "/anything"),
            ]:
                proxy_request(web.proxy_port, "GET", f"{upstream.url}{path}")
            flows = web.flows()
            (shown,) = [f for f in flows if f["request"]["path"] == "/status"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)  # so an old screenshot cannot pass for a new one
            argv = chromium_command(
                binary,
                workdir / "chromium-profile",
                web.url(f"/flows/{shown['id']}/comment"),
                f"--screenshot={out}",
                "--window-size=1400,800",
                "--hide-scrollbars",
            )
            run_chromium(argv)
    if not out.is_file():
        raise SystemExit(f"chromium wrote no screenshot to {out}")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"PNG to write (default {OUT})")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    command = take(out)
    print("chromium command:", " ".join(command))
    print("screenshot:", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
