"""The gateway's comment on a flow, as a browser shows it: mitmweb's UI in headless Chromium.

A real mitmweb with the gateway, a request through it, then Debian's `chromium`
(`--headless --dump-dom`, a fresh profile) renders `#/flows/<id>/comment` and
`#/flows/<id>/request`; the test reads the rendered DOM. Skipped when chromium is not
installed (`.ci/run` installs it). scripts/mitmweb_shot.py takes the screenshot in
docs/ with the same pieces.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.loopback import free_port
from scripts.mitmweb_shot import Mitmweb, chromium_command, find_chromium, run_chromium
from tests.e2e.clients import proxy_request
from tests.e2e.helpers import bearer_token, fingerprint, new_secret
from tests.e2e.upstreams import Upstream

CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (Debian: apt-get install chromium; .ci/run does)",
    ),
]

SECRET = new_secret()
# The Comment tab: <h4>Comment</h4><span class="inline-input kv-value" ...>TEXT</span>,
# alike in mitmproxy 11.0 and 12.
_COMMENT_TAB = re.compile(r"<h4>Comment</h4>\s*<span\b[^>]*>([^<]*)</span>")


def config(api: Upstream, idp: Upstream) -> str:
    routes = [
        {
            "name": "api",
            "hosts": [f"127.0.0.1:{api.port}"],
            "token": {"type": "hmac", "secret": {"env": "BROWSER_SECRET"}, "lifetime": 300},
        },
        {
            "name": "idp",
            "hosts": [f"127.0.0.1:{idp.port}"],
            "token": {
                "type": "oauth2",
                "token_url": f"http://127.0.0.1:{free_port()}/oauth2/token",  # nothing there
                "client_id": "browser-client",
                "client_secret": "browser-client-secret",
                "timeout": 2,
            },
        },
    ]
    return json.dumps({"version": 1, "routes": routes})


@pytest.fixture
def idp() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def rendered(web: Mitmweb, profile: Path, flow: dict[str, Any], tab: str) -> str:
    """The DOM of mitmweb's UI once Chromium has rendered `flow`'s `tab`."""
    assert CHROMIUM is not None
    url = web.url(f"/flows/{flow['id']}/{tab}")
    return run_chromium(chromium_command(CHROMIUM, profile, url, "--dump-dom"))


def comment_tab(dom: str) -> str:
    found = _COMMENT_TAB.findall(dom)
    assert len(found) == 1, f"{len(found)} Comment tabs in the rendered page"
    return html.unescape(found[0])


def test_mitmweb_shows_the_gateways_comment_on_the_flow(
    tmp_path: Path, upstream: Upstream, idp: Upstream
) -> None:
    with Mitmweb(config(upstream, idp), tmp_path, env={"BROWSER_SECRET": SECRET}) as web:
        assert proxy_request(web.proxy_port, "GET", f"{upstream.url}/orders").status == 200
        assert proxy_request(web.proxy_port, "GET", f"{idp.url}/me").status == 502
        token = bearer_token(upstream.last.header("Authorization"))
        flows = {f["request"]["path"]: f for f in web.flows()}
        injected = rendered(web, tmp_path / "profile-1", flows["/orders"], "comment")
        answered = rendered(web, tmp_path / "profile-2", flows["/me"], "comment")
        request = rendered(web, tmp_path / "profile-3", flows["/orders"], "request")

    for dom in (injected, answered, request):  # first: no later message may show a token
        leaked = [name for name, value in (("token", token), ("secret", SECRET)) if value in dom]
        assert not leaked, f"the rendered page holds the {' and the '.join(leaked)}"
    shown = comment_tab(injected)
    expected = rf"injected: hmac kid={fingerprint(SECRET)} \d+s left \(authgw, route api\)"
    assert re.fullmatch(expected, shown), f"the api flow's Comment tab shows {shown!r}"
    shown = comment_tab(answered)
    assert shown.startswith("token unavailable: "), f"the idp flow's: {shown!r}"
    assert shown.endswith("(authgw, route idp)"), f"the idp flow's: {shown!r}"
    placeholder = "Bearer &lt;authgw redacted sha256:" in request
    assert placeholder, "the api flow's Request tab shows no redacted Authorization header"
