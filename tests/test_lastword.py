"""When the last word needs a hook at the end of mitmproxy's chain (``lastword.needed``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from mitmproxy import http
from mitmproxy.addons import script
from mitmproxy.addons.mapremote import MapRemote
from mitmproxy.addons.save import Save
from mitmproxy.addons.stickycookie import StickyCookie
from mitmproxy.addons.tlsconfig import TlsConfig

from authgw import lastword

ME = object()  # authgw's addon, wherever it is in the chain
NO_OPTIONS = SimpleNamespace()


class _Later:
    def request(self, flow: http.HTTPFlow) -> None:
        pass


def test_nothing_after_authgw_or_only_readers_need_no_hook() -> None:
    assert not lastword.needed([ME], ME, NO_OPTIONS)
    # TlsConfig has a request hook in mitmproxy 12 (it answers CRL requests itself).
    assert not lastword.needed([ME, Save(), TlsConfig()], ME, NO_OPTIONS)


def test_an_addon_before_authgw_needs_no_hook() -> None:
    assert not lastword.needed([_Later(), ME], ME, NO_OPTIONS)


def test_any_other_addon_with_a_request_hook_after_authgw_needs_it() -> None:
    assert lastword.needed([ME, _Later()], ME, NO_OPTIONS)


def test_a_script_after_authgw_needs_it_before_it_has_loaded() -> None:
    # mitmproxy loads and reloads scripts in a task of its own, telling authgw nothing.
    unloaded = script.Script.__new__(script.Script)
    assert lastword.needed([ME, unloaded], ME, NO_OPTIONS)


@pytest.mark.parametrize(
    ("addon", "option", "value"),
    [(MapRemote(), "map_remote", ["|~q|x|y"]), (StickyCookie(), "stickycookie", ".")],
)
def test_mitmproxys_own_addons_count_under_the_options_that_make_them_change_requests(
    addon: object, option: str, value: object
) -> None:
    assert not lastword.needed([ME, addon], ME, SimpleNamespace(**{option: None}))
    assert lastword.needed([ME, addon], ME, SimpleNamespace(**{option: value}))


def test_the_last_word_itself_does_not_count() -> None:
    assert not lastword.needed(
        [ME, lastword.LastWord(lambda flow: None, lambda flow: None)], ME, NO_OPTIONS
    )


class _Streamer:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        flow.response.stream = True  # type: ignore[union-attr]


def test_a_response_hook_is_wanted_only_for_an_addon_before_authgw_that_may_stream() -> None:
    from mitmproxy.addons.modifyheaders import ModifyHeaders

    assert not lastword.streams_before([ME, _Streamer()], ME)  # after: LastWord's job
    assert not lastword.streams_before([ModifyHeaders(), ME], ME)  # mitmproxy's own
    assert lastword.streams_before([_Streamer(), ME], ME)
    unloaded = script.Script.__new__(script.Script)
    unloaded.ns = None
    assert lastword.streams_before([unloaded, ME], ME)  # a script before, loaded or not


def test_authgw_has_a_responseheaders_hook_only_while_a_response_may_stream() -> None:
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.test import taddons

    from authgw.addon import AuthGateway

    async def main() -> None:  # taddons wants a running loop (it would make one, unclosed)
        addon = AuthGateway()
        with taddons.context(addon, Proxyserver()) as tctx:
            assert getattr(addon, "responseheaders", None) is None
            tctx.configure(addon, stream_large_bodies="1m")
            assert callable(getattr(addon, "responseheaders", None))
            tctx.configure(addon, stream_large_bodies=None)
            assert getattr(addon, "responseheaders", None) is None

    asyncio.run(main())
