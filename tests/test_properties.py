"""Property tests: whatever a user writes or a client sends, a clear answer, never a crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from authgw import config, routing
from authgw.config import ConfigError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)

VALID = {
    "version": 1,
    "unmatched": "reject",
    "upstream_header": "X-Upstream-Host",
    "metrics": "127.0.0.1:9464",
    "cache": {"max_entries": 10, "refresh_ahead": 30, "min_ttl": 5, "error_backoff": 1},
    "routes": [
        {
            "name": "dash",
            "hosts": ["dash.example.com"],
            "inbound": "keep-as:X-Kept",
            "token": {
                "type": "hmac",
                "secret": {"env": "X"},
                "claims": {"a": 1},
                "lifetime": 60,
                "kid": "none",
                "algorithm": "HS384",
            },
        },
        {
            "name": "sts",
            "hosts": ["*.p.example"],
            "token": {"type": "sts", "audience": ["a", "b"], "duration": 300, "tags": {"t": "v"}},
        },
        {"name": "static", "hosts": ["s:8443"], "token": {"type": "static", "value": "x"}},
    ],
}
KEYS = [
    "version",
    "cache",
    "routes",
    "unmatched",
    "upstream_header",
    "flowlog",
    "metrics",
    "name",
    "hosts",
    "token",
    "type",
    "secret",
    "audience",
    "duration",
    "tags",
    "lifetime",
    "max_entries",
    "inbound",
    "header",
    "prefix",
    "algorithm",
    "kid",
    "env",
    "file",
]


def _parse(text: str) -> None:
    try:
        cfg = config.parse(text, file="fuzz.yaml")
    except ConfigError as e:
        assert str(e), "an error must say something"
        assert "Traceback" not in str(e)
    else:
        assert isinstance(cfg, config.Config)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_yaml_document_is_a_config_or_a_config_error(value: Any) -> None:
    _parse(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    _parse(text)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value could be swapped, inner nodes included."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


PATHS = _paths(VALID)


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], tuple(rest), value)}
    return [*doc[:head], _replace(doc[head], tuple(rest), value), *doc[head + 1 :]]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PATHS), json_values | st.integers(min_value=-5, max_value=100_000))
def test_a_valid_config_with_one_field_changed_never_crashes(
    path: tuple[Any, ...], value: Any
) -> None:
    _parse(json.dumps(_replace(VALID, path, value)))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80))
def test_any_upstream_header_value_is_a_valid_host_or_a_value_error(raw: bytes) -> None:
    value = raw.decode("utf-8", "surrogateescape")  # as mitmproxy decodes header values
    try:
        host, port = routing.parse_upstream(value)
    except ValueError:
        return
    assert port is None or 0 < port < 65536
    assert host == routing.normalize_host(host) and host
    assert not any(c in host for c in "/?#@ \t\r\n")
    # What came out is itself an acceptable upstream: parsing it again is stable.
    shown = f"[{host}]" if ":" in host else host
    assert routing.parse_upstream(shown if port is None else f"{shown}:{port}") == (host, port)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}(:[1-9][0-9]{0,3})?", fullmatch=True))
def test_well_formed_upstream_values_are_accepted(value: str) -> None:
    host, port = routing.parse_upstream(value)
    assert host == routing.normalize_host(value.partition(":")[0])
