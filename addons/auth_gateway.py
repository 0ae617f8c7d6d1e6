"""The file to pass to mitmdump.

mitmdump -s addons/auth_gateway.py --set authgw_config=gateway.yaml
"""

import logging

try:
    from authgw.addon import AuthGateway
except ModuleNotFoundError as e:
    if (e.name or "").partition(".")[0] == "authgw":
        raise  # our own module: a bug, not an install problem
    # A mitmproxy from pipx, uv or Homebrew lacks our dependencies. One error line instead
    # of a traceback; mitmdump exits non-zero on an error logged at start.
    from authgw.install_hint import missing_dependency

    logging.getLogger("authgw").error(missing_dependency(e))
    addons: list[object] = []
else:
    addons = [AuthGateway()]
