"""A mitmproxy script for tests and benches: GET http://authgw-probe.invalid/ through the
proxy is answered with the process's threads (by name), asyncio tasks and open file
descriptors, as JSON. Load it after the gateway (`-s auth_gateway.py -s probe_addon.py`).
Never load it in front of real traffic: it answers that host itself."""

from __future__ import annotations

import asyncio
import json
import os
import threading

from mitmproxy import http

HOST = "authgw-probe.invalid"


class Probe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.pretty_host == HOST:
            doc = {
                "threads": [t.name for t in threading.enumerate()],
                "tasks": len(asyncio.all_tasks()),
                "fds": len(os.listdir("/proc/self/fd")),
            }
            flow.response = http.Response.make(
                200, json.dumps(doc), {"Content-Type": "application/json"}
            )


addons = [Probe()]
