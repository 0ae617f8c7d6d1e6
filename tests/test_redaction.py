"""Masking in flight and redaction once sent (authgw.redaction), on real mitmproxy flows."""

from __future__ import annotations

from mitmproxy.test import tflow, tutils

from authgw.config import Route, SecretRef, StaticTokenConfig
from authgw.flowlog import FlowRecord
from authgw.flowstate import FlowState
from authgw.hosts import HostPattern
from authgw.redaction import mask, redact
from authgw.tokens import Token, fingerprint

TOKEN = Token("injected-token-value-0123456789", "static")
CLIENT = "client-own-token-value-abcdef"
ROUTE = Route(
    "api",
    (HostPattern.parse("api.example"),),
    StaticTokenConfig(value=SecretRef(kind="env", name="X")),
    keep_inbound_as="X-Client-Authorization",
)
SHOWN = f"Bearer <authgw redacted {TOKEN.fingerprint}>"
SHOWN_CLIENT = f"Bearer <authgw redacted {fingerprint(CLIENT)}>"


def masked_flow() -> tuple[object, FlowState]:
    f = tflow.tflow(req=tutils.treq(host="api.example", port=443, scheme=b"https"))
    f.request.headers["Authorization"] = f"Bearer {TOKEN.value}"
    f.request.headers["X-Client-Authorization"] = f"Bearer {CLIENT}"
    mask(f.request.headers, ROUTE)
    return f, FlowState(FlowRecord(), route=ROUTE, token=TOKEN)


def test_in_flight_every_view_of_the_flow_shows_placeholders() -> None:
    f, _ = masked_flow()
    headers = f.request.headers  # type: ignore[attr-defined]
    assert headers["Authorization"] == SHOWN
    assert headers.get_all("X-Client-Authorization") == [SHOWN_CLIENT]
    shown = dict(headers.items(True))  # what mitmweb's flow list and API serialize
    assert shown["Authorization"] == SHOWN and shown["X-Client-Authorization"] == SHOWN_CLIENT
    assert TOKEN.value not in repr(headers) and CLIENT not in str(headers)


def test_in_flight_the_wire_carries_the_tokens() -> None:
    f, _ = masked_flow()
    raw = bytes(f.request.headers)  # type: ignore[attr-defined]  # HTTP/1's writer
    assert f"Bearer {TOKEN.value}".encode() in raw and CLIENT.encode() in raw


def test_once_sent_the_flow_holds_placeholders_for_good() -> None:
    f, state = masked_flow()
    redact(f, state)  # type: ignore[arg-type]
    state_dump = repr(f.get_state())  # type: ignore[attr-defined]  # what -w writes
    assert TOKEN.value not in state_dump and CLIENT not in state_dump
    assert SHOWN.encode() in bytes(f.request.headers)  # type: ignore[attr-defined]
    redact(f, state)  # type: ignore[arg-type]  # once: a second call changes nothing
    assert f.request.headers["Authorization"] == SHOWN  # type: ignore[attr-defined]


def test_the_consoles_escaped_view_shows_the_placeholder_too() -> None:
    from mitmproxy.utils.strutils import bytes_to_escaped_str

    f, _ = masked_flow()
    value = next(v for k, v in f.request.headers.fields if k == b"Authorization")  # type: ignore[attr-defined]
    assert bytes_to_escaped_str(value) == SHOWN
    assert TOKEN.value.encode() in b": ".join([b"Authorization", value])  # the wire's join


def test_a_masked_value_shows_the_placeholder_however_another_addon_prints_it() -> None:
    from authgw.redaction import Masked

    value = Masked(b"Bearer sekrit-token", "Bearer <authgw redacted sha256:0123456789ab>")
    shown = [str(value), f"{value}", "%s" % value, format(value), f"{value!r}", "%r" % value]
    assert all("sekrit" not in s and "authgw redacted" in s for s in shown), shown
    assert f"{value:>60}".strip() == str(value)
    assert bytes(value) == b"Bearer sekrit-token"  # the wire keeps the token
