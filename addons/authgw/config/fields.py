"""Reading one field of the YAML at a time, with the field path and line of any error.

``FieldReader`` is what every section parser holds: typed getters (string, choice,
boolean, number, secret, ...) that either return a checked value or raise a
``ConfigError`` like ``routes[0].token.optional: must be true or false, not maybe
(gateway.yaml:7)``, with the line ruamel.yaml recorded for the node. It also keeps
the warnings that parsing collects and turns relative paths into paths under the
config file's directory.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from authgw.config.schema import ConfigError, SecretRef
from authgw.httpsyntax import HEADER_NAME

_SECRET_KINDS = ("env", "file", "cmd", "aws_secretsmanager", "aws_ssm")
_SECRET_OPTIONS = ("field", "refresh", "timeout", "region")
_SECRET_FORMS = (
    "{env: NAME}, {file: PATH}, {cmd: COMMAND}, {aws_secretsmanager: NAME}, {aws_ssm: NAME}"
)


class FieldReader:
    """Typed getters over ruamel's nodes; each failure names the field and its line."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.warnings: list[str] = []

    def error(self, path: str, reason: str, parent: Any = None, key: Any = None) -> ConfigError:
        return ConfigError(path, reason, file=self.file, line=_line(parent, key))

    def mapping(
        self, value: Any, path: str, allowed: Sequence[str], parent: Any = None, key: Any = None
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping, not {kind_of(value)}", parent, key)
        for k in value:
            if not isinstance(k, str) or k not in allowed:
                # A key is named only when it is a misspelling of an allowed one: a secret
                # pasted in the wrong place is a key too, and must not be shown.
                close = difflib.get_close_matches(k, allowed, 1, 0.8) if isinstance(k, str) else []
                what = f"unknown key {k!r} (did you mean {close[0]}?)" if close else "unknown key"
                raise self.error(
                    path or "(top level)", f"{what}; expected one of {', '.join(allowed)}", value, k
                )
        return value

    def optional_str(
        self, m: Mapping[str, Any], key: str, path: str, default: str | None
    ) -> str | None:
        value = m.get(key, default)
        if value is None or isinstance(value, str):
            return value
        raise self.error(join(path, key), f"must be a string, not {kind_of(value)}", m, key)

    def optional_match(
        self, m: Mapping[str, Any], key: str, path: str, pattern: re.Pattern[str], reason: str
    ) -> str | None:
        """An optional string that must match ``pattern`` whole; else the error ``reason``."""
        value = self.optional_str(m, key, path, None)
        if value is not None and not pattern.fullmatch(value):
            raise self.error(join(path, key), reason, m, key)
        return value

    def string(self, m: Mapping[str, Any], key: str, path: str, default: str) -> str:
        value = self.optional_str(m, key, path, default)
        if value is None:
            raise self.error(join(path, key), "must be a string, not null", m, key)
        return value

    def choice(
        self, m: Mapping[str, Any], key: str, path: str, options: Sequence[str], default: str
    ) -> str:
        value = m.get(key, default)
        if value not in options:
            raise self.error(
                join(path, key), f"is not one of {', '.join(options)} ({show(value)})", m, key
            )
        return str(value)

    def boolean(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = m.get(key, default)
        if not isinstance(value, bool):
            raise self.error(join(path, key), f"must be true or false, not {show(value)}", m, key)
        return value

    def number(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        default: float | None,
        *,
        low: float,
        high: float | None = None,
        integer: bool = False,
    ) -> float | None:
        value = m.get(key, default)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and not isinstance(value, int))
        ):
            kind = "a whole number" if integer else "a number"
            raise self.error(join(path, key), f"must be {kind}, not {show(value)}", m, key)
        if value < low or (high is not None and value > high):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise self.error(join(path, key), f"is out of range ({bound})", m, key)
        return value

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def header_name(self, value: str, path: str, parent: Any, key: Any) -> None:
        if not HEADER_NAME.fullmatch(value):
            raise self.error(path, "is not a valid header name", parent, key)

    def secret(
        self, m: Mapping[str, Any], key: str, path: str, *, literal_ok: bool = False
    ) -> SecretRef:
        """A secret reference; a literal works but is warned about, unless ``literal_ok``
        (an OAuth2 client id is no secret)."""
        where = join(path, key)
        if key not in m or m[key] is None:
            raise self.error(where, f"is required: {_SECRET_FORMS} or a string", m, key)
        raw = m[key]
        if isinstance(raw, str):
            if not raw:
                raise self.error(where, "must not be empty", m, key)
            if not literal_ok:
                self.warnings.append(
                    f"{where} is a literal in the config file; prefer {{env: NAME}} or "
                    "{file: PATH} so the secret stays out of the file"
                )
            return SecretRef(kind="literal", literal=raw)
        ref = self.mapping(raw, where, (*_SECRET_KINDS, *_SECRET_OPTIONS), m, key)
        kinds = [k for k in ref if k in _SECRET_KINDS]
        if len(kinds) != 1:
            raise self.error(where, f"must have exactly one of {', '.join(_SECRET_KINDS)}", m, key)
        kind = kinds[0]
        value = ref[kind]
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}.{kind}", "must be a non-empty string", ref, kind)
        options = set(ref) - {kind}
        allowed = {
            "cmd": {"refresh", "timeout"},
            "aws_secretsmanager": {"field", "refresh", "region"},
            "aws_ssm": {"refresh", "region"},
        }.get(kind, set())
        if options - allowed:
            extra = sorted(options - allowed)[0]
            raise self.error(f"{where}.{extra}", f"does not go with {kind}", ref, extra)
        if kind == "env":
            return SecretRef(kind="env", name=value)
        if kind == "file":
            return SecretRef(kind="file", name=str(self.path(value)))
        field_name = self.optional_str(ref, "field", where, None)
        return SecretRef(
            kind=kind,  # type: ignore[arg-type]
            name=value,
            field=field_name or None,
            refresh=float(self.number(ref, "refresh", where, 300, low=1, high=86_400) or 300),
            timeout=float(self.number(ref, "timeout", where, 5, low=0.1, high=300) or 5),
            region=self.optional_str(ref, "region", where, None),
        )


def join(path: str, key: str) -> str:
    """The field path of ``key`` inside ``path`` ("" is the top of the file)."""
    return f"{path}.{key}" if path else key


def _line(parent: Any, key: Any) -> int | None:
    """1-based line of ``parent[key]`` (or of ``parent``) as ruamel.yaml recorded it."""
    lc = getattr(parent, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        if isinstance(parent, list):
            return int(lc.item(key)[0]) + 1
        return int(lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(lc.line) + 1 if lc.line is not None else None


def kind_of(value: Any) -> str:
    """What sort of YAML value ``value`` is, for "must be X, not <kind>" messages."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def show(value: Any) -> str:
    """What an error message says of a value: its kind and size, never the value (any
    field may hold a secret pasted in the wrong place)."""
    return "null" if value is None else kind_of(value)


def plain(value: Any) -> Any:
    """ruamel's CommentedMap/Seq and scalar subclasses into plain JSON-able values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
