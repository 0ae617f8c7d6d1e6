"""From a file or a text to a ``Config``: the YAML, the top-level keys, ``cache:``.

``routes:`` is ``authgw.config.routes``' job; this module reads the document around it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from authgw.config.fields import FieldReader
from authgw.config.routes import parse_routes
from authgw.config.schema import CacheSettings, Config, ConfigError
from authgw.hosts import parse_host_port


def load(path: str | Path) -> Config:
    """Read and validate the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError("", f"config file {path} is not UTF-8") from e
    return parse(text, file=path.name, base_dir=path.parent)


def parse(text: str, *, file: str = "<config>", base_dir: Path = Path(".")) -> Config:
    """Validate YAML ``text``; relative file paths in it are taken from ``base_dir``."""
    try:
        data = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = f"not valid YAML: {yaml_problem(e.problem or e.context or '')}"
        raise ConfigError("", reason, file=file, line=line) from None
    except YAMLError:
        raise ConfigError("", "not valid YAML", file=file) from None
    except TypeError:  # ruamel: a mapping or a list used as a mapping key
        raise ConfigError(
            "", "not valid YAML: a mapping or list used as a key", file=file
        ) from None
    except (ValueError, IndexError):  # ruamel 0.19 on some scalars ("-_", "._")
        raise ConfigError(
            "", "not valid YAML: a value the YAML reader fails on", file=file
        ) from None
    return _document(FieldReader(file, base_dir), data)


def yaml_problem(problem: str) -> str:
    """ruamel's description of a syntax error, without the values it quotes (a duplicate
    key's values, an alias name, a character: any of them may be a secret)."""
    if problem.startswith("found duplicate key"):
        return "a key appears twice in one mapping"
    if "alias" in problem:
        return "an alias (*name) that no anchor (&name) defines"
    if "'\\t'" in problem:
        return "a tab character, which YAML does not allow here (indent with spaces)"
    return re.sub(r"""(['"]).*?\1""", "<...>", problem)


def _document(r: FieldReader, data: Any) -> Config:
    top = r.mapping(
        data,
        "",
        (
            "version",
            "unmatched",
            "upstream_header",
            "upstream_scheme",
            "cache",
            "flowlog",
            "metrics",
            "routes",
            "leak_check",
            "leak_check_body_bytes",
        ),
    )
    if "version" not in top:
        raise r.error("version", "is required (version: 1)")
    if top["version"] != 1 or isinstance(top["version"], bool):
        raise r.error("version", "is not supported (only 1)", top, "version")
    cache = _cache(r, top)
    upstream_header = r.optional_str(top, "upstream_header", "", None)  # off unless named
    if upstream_header is not None:
        r.header_name(upstream_header, "upstream_header", top, "upstream_header")
    flowlog = r.optional_str(top, "flowlog", "", None)
    metrics = r.optional_str(top, "metrics", "", None)
    return Config(
        routes=parse_routes(r, top, cache, upstream_header),
        unmatched="reject"
        if r.choice(top, "unmatched", "", ("passthrough", "reject"), "passthrough") == "reject"
        else "passthrough",
        upstream_header=upstream_header,
        upstream_scheme="http"
        if r.choice(top, "upstream_scheme", "", ("https", "http"), "https") == "http"
        else "https",
        cache=cache,
        flowlog=r.path(flowlog) if flowlog else None,
        metrics=_listen_address(r, metrics, "metrics", top) if metrics else None,
        leak_check=_LEAK_CHECK[r.choice(top, "leak_check", "", tuple(_LEAK_CHECK), "block")],
        leak_check_body_bytes=int(
            r.number(top, "leak_check_body_bytes", "", 1 << 20, low=0, high=1 << 26, integer=True)
            or 0
        ),
        base_dir=r.base_dir,
        warnings=tuple(r.warnings),
    )


_LEAK_CHECK: dict[str, Literal["block", "observe", "off"]] = {
    "block": "block",
    "observe": "observe",
    "off": "off",
}


def listen_address(text: str, where: str) -> tuple[str, int]:
    """``host:port`` given as an option (``authgw_metrics``): ConfigError naming it."""
    try:
        host, port = parse_host_port(text)
    except ValueError as e:
        raise ConfigError(where, f"{e} (expected host:port)") from None
    if port is None:
        raise ConfigError(where, f"{text!r} has no port (expected host:port)")
    return host, port


def _listen_address(r: FieldReader, value: str, path: str, parent: Any) -> tuple[str, int]:
    try:
        host, port = parse_host_port(value)
    except ValueError:
        raise r.error(path, "is not a listen address (expected host:port)", parent, path) from None
    if port is None:
        raise r.error(path, "has no port (expected host:port)", parent, path)
    return host, port


def _cache(r: FieldReader, top: Mapping[str, Any]) -> CacheSettings:
    raw = top.get("cache") or {}
    m = r.mapping(
        raw,
        "cache",
        ("max_entries", "refresh_ahead", "min_ttl", "error_backoff", "default_ttl"),
        top,
        "cache",
    )
    d = CacheSettings()
    return CacheSettings(
        max_entries=int(
            r.number(m, "max_entries", "cache", d.max_entries, low=1, high=10_000_000, integer=True)
            or d.max_entries
        ),
        refresh_ahead=float(
            r.number(m, "refresh_ahead", "cache", d.refresh_ahead, low=0, high=86_400) or 0
        ),
        min_ttl=float(r.number(m, "min_ttl", "cache", d.min_ttl, low=0, high=86_400) or 0),
        error_backoff=float(
            r.number(m, "error_backoff", "cache", d.error_backoff, low=0, high=3_600) or 0
        ),
        default_ttl=float(
            r.number(m, "default_ttl", "cache", d.default_ttl, low=1, high=86_400) or 300
        ),
    )
