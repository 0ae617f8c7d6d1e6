"""The file to pass to mitmdump.

mitmdump -s addons/auth_gateway.py --set authgw_config=gateway.yaml
"""

import logging

from mitmproxy import hooks

try:
    from authgw.addon import AuthGateway
except ImportError as e:
    if (e.name or "authgw").partition(".")[0] == "authgw":
        raise  # our own module: a bug, not an install problem
    # A mitmproxy from pipx, uv or Homebrew lacks our dependencies, or has one older than
    # our floor (a name it does not have yet). One error line instead of a traceback;
    # mitmdump exits non-zero on an error logged at start.
    from authgw.install_hint import missing_dependency

    logging.getLogger("authgw").error(missing_dependency(e))
    addons: list[object] = []
else:
    addons = [AuthGateway()]

# mitmproxy asks this module for every event's hook before it reaches the addons above.
# A module answers a missing name by raising (and formatting) an AttributeError, which
# costs about 1.5% of a proxied request's CPU; a name bound to None is skipped for free.
# (add_log is left out: mitmproxy warns about an addon that has it.)
globals().update(dict.fromkeys(hooks.all_hooks.keys() - globals().keys() - {"add_log"}, None))
