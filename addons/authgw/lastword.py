"""Where the gateway's last word on a request is said.

A token is chosen in authgw's own request hooks; an addon whose ``request`` hook runs
later (``map_remote``, mitmweb's intercept, a script loaded after authgw) may still
re-target the flow or rewrite its names or body. When such an addon is in the chain,
``LastWord`` goes to the end of mitmproxy's chain and re-checks the flow there (421
if it moved; a sigv4 flow is signed there). When none is, the same check runs at the
end of authgw's own ``request`` hook, and the chain carries no hook for it: every
addon in mitmproxy's chain costs each event of every flow, whether it has a hook for
it or not.

``needed`` decides from the chain and the options; the addon asks again whenever the
options change and once mitmproxy runs. Any script after authgw's counts, loaded or not
(mitmproxy reloads a script when its file changes without telling other addons); an
addon that joins the chain on its own while mitmproxy runs, with no option change after
it, is not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mitmproxy import addonmanager, http

traverse: Callable[[list[Any]], Iterator[Any]] = addonmanager.traverse  # untyped there

NAME = "authgw_last_word"  # mitmproxy's addon name: one at a time, also across reloads

# mitmproxy's own addons that have a request hook: None if they never change where a
# request goes (or answer it themselves); else the option under which they do.
_MITMPROXY_REQUEST_HOOKS: dict[str, str | None] = {
    "ServerPlayback": None,  # answers from a file
    "MapLocal": None,  # answers from a file
    "TlsConfig": None,  # mitmproxy 12: answers CRL requests itself
    "Save": None,
    "Dumper": None,
    "View": None,
    "MapRemote": "map_remote",
    "StickyAuth": "stickyauth",  # fills in an Authorization the client left out
    "StickyCookie": "stickycookie",  # rewrites Cookie, which a sigv4 signature covers
    "ModifyBody": "modify_body",  # a changed body breaks a sigv4 signature
    "Intercept": "intercept",  # a person may edit the flow in mitmweb or the console
}


class LastWord:
    """The hook that runs after all others; see ``AuthGateway.last_word``."""

    name = NAME

    def __init__(
        self, say: Callable[[http.HTTPFlow], None], streamed: Callable[[http.HTTPFlow], None]
    ) -> None:
        self._say = say
        self._streamed = streamed

    def request(self, flow: http.HTTPFlow) -> None:
        self._say(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._streamed(flow)  # an addon after authgw may have set the response's stream


def needed(chain: Iterable[Any], me: object, options: Any) -> bool:
    """True if an addon after ``me`` in ``chain`` has a request hook that may change a
    request under the current ``options``."""
    seen = False
    for top in chain:
        if getattr(top, "name", None) == NAME:
            continue
        for addon in traverse([top]):
            if addon is me:
                seen = True
            elif seen and _may_change_requests(addon, options):
                return True
    return False


def streams_before(chain: Iterable[Any], me: object) -> bool:
    """True if an addon before ``me`` in ``chain`` may set a response's ``stream`` in its
    ``responseheaders`` (mitmproxy's own addons never do; a script, loaded or not, may)."""
    for addon in traverse(list(chain)):
        if addon is me:
            return False
        if _is_script(addon):
            if me not in traverse([addon]):  # authgw's own script holds nothing else
                return True
            continue
        own = type(addon).__module__.startswith("mitmproxy.")
        if not own and callable(getattr(addon, "responseheaders", None)):
            return True
    return False


def _is_script(addon: object) -> bool:
    """mitmproxy's holder of one ``-s`` script (what it loads may change at any time)."""
    cls = type(addon)
    return cls.__name__ == "Script" and cls.__module__ == "mitmproxy.addons.script"


def _may_change_requests(addon: Any, options: Any) -> bool:
    cls = type(addon)
    if _is_script(addon):
        # A script after authgw, loaded or not: mitmproxy (re)loads scripts in a task of
        # their own and tells authgw nothing, so whatever its file holds later counts now.
        return True
    if not callable(getattr(addon, "request", None)):
        return False
    if not cls.__module__.startswith("mitmproxy."):
        return True  # a script's or another tool's addon: it may do anything
    if cls.__name__ not in _MITMPROXY_REQUEST_HOOKS:
        return True
    option = _MITMPROXY_REQUEST_HOOKS[cls.__name__]
    return option is not None and bool(getattr(options, option, None))
