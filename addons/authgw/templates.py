"""Claim templates (hmac): claims filled in from the request they are made for.

A claim value (or a string anywhere inside one) may hold ``${header:NAME}``,
``${client:CLAIM}`` (a claim of the client token the route's ``verify`` accepted),
``${host}`` (the routed host, lowercase, no port) and ``${method}`` (uppercase); ``$$``
is a literal ``$``. ``compile_claims`` parses the claims once, when the config is read;
``ClaimTemplate.render`` fills them in per request. A placeholder that is the whole
string takes the input's own value (a client claim may be a list); inside a longer
string, the input is written as text. A missing or empty input is ``MissingClaimInput``,
never a token with an empty claim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from authgw.errors import AuthgwError
from authgw.httpsyntax import HEADER_NAME

_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{|\$")
MAX_INPUT = 1024  # characters: one input beyond this is refused, not signed
# Control characters (a folded header's CR LF among them) and lone surrogates (bytes that
# are not UTF-8, as mitmproxy decodes them): refused, never signed.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")

Kind = Literal["header", "client", "host", "method"]


class TemplateError(AuthgwError, ValueError):
    """A claim template that cannot be parsed (the config's fault): where, and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class MissingClaimInput(AuthgwError):
    """A request lacks what a template needs; answered 400 ``missing_claim_input``."""

    def __init__(self, name: str, why: str = "missing") -> None:
        super().__init__(f"{why} claim input {name}" if why == "missing" else f"{name}: {why}")
        self.name = name
        self.why = why

    @property
    def body(self) -> str:
        if self.why == "missing":
            return f"missing claim input {self.name}"
        return f"bad claim input {self.name}: {self.why}"


@dataclass(frozen=True)
class Slot:
    """One ``${...}``: what it reads, and the header or claim name."""

    kind: Kind
    name: str = ""


@dataclass(frozen=True)
class _Text:
    """A string with placeholders: literal parts and slots, in order."""

    parts: tuple[str | Slot, ...]


@dataclass(frozen=True)
class Inputs:
    """What a request offers a template: header values, the accepted client claims,
    the routed host and the method."""

    header: Callable[[str], list[str]]
    client: Mapping[str, Any] | None
    host: str
    method: str


@dataclass(frozen=True)
class ClaimTemplate:
    """A route's claims with the slots filled in per request."""

    tree: Any
    slots: tuple[Slot, ...]
    headers: tuple[str, ...] = field(default=())  # removed from the request before forwarding

    @property
    def uses_client(self) -> bool:
        return any(s.kind == "client" for s in self.slots)

    def render(self, inputs: Inputs) -> tuple[dict[str, Any], str]:
        """(the rendered claims, their canonical JSON for the cache key)."""
        values = {slot: _read(slot, inputs) for slot in self.slots}
        claims = _fill(self.tree, values)
        assert isinstance(claims, dict)
        text = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return claims, text


def compile_claims(claims: Mapping[str, Any]) -> ClaimTemplate | None:
    """The template for ``claims``, or None when no claim holds a placeholder."""
    slots: dict[Slot, None] = {}
    tree = _compile(dict(claims), slots, "claims")
    if not slots:
        return None
    headers = tuple(dict.fromkeys(s.name for s in slots if s.kind == "header"))
    return ClaimTemplate(tree, tuple(slots), headers)


def _compile(value: Any, slots: dict[Slot, None], path: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _compile(v, slots, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, slots, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    parts: list[str | Slot] = []
    at = 0
    for m in _TOKEN.finditer(value):
        literal = value[at : m.start()]
        at = m.end()
        if m.group(0) == "$$":
            parts.append(literal + "$")
        elif m.group(1) is None:
            parts.append(literal + m.group(0))  # a lone "$" or an unclosed "${": literal
        else:
            parts.append(literal)
            slot = _slot(m.group(1), path)
            slots[slot] = None
            parts.append(slot)
    parts.append(value[at:])
    merged = _merge(parts)
    if not any(isinstance(p, Slot) for p in merged):
        return "".join(p for p in merged if isinstance(p, str))
    return _Text(tuple(merged))


def _slot(inner: str, path: str) -> Slot:
    kind, sep, name = inner.partition(":")
    if kind in ("host", "method") and not sep:
        return Slot(kind)  # type: ignore[arg-type]
    if kind == "header" and sep and HEADER_NAME.fullmatch(name):
        return Slot("header", name)
    if kind == "client" and sep and name:
        return Slot("client", name)
    shown = f"${{{kind}...}}" if re.fullmatch(r"[a-z_]{1,20}", kind) else "another kind"
    raise TemplateError(
        path,
        "a placeholder must be ${header:NAME}, ${client:CLAIM}, ${host} or ${method} "
        f"(found {shown})",
    )


def _merge(parts: list[str | Slot]) -> list[str | Slot]:
    """Adjacent literals joined, empty ones dropped."""
    out: list[str | Slot] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        elif p != "":
            out.append(p)
    return out


def _read(slot: Slot, inputs: Inputs) -> Any:
    if slot.kind == "host":
        return inputs.host.lower().rstrip(".")
    value: Any
    name = slot.name or slot.kind
    if slot.kind == "method":  # the client's request line: under the same rules
        value = inputs.method.upper()
    elif slot.kind == "header":
        values = inputs.header(slot.name)
        if len(values) > 1:
            raise MissingClaimInput(name, f"sent {len(values)} times")
        # HTTP strips only SP and HTAB around a field value (RFC 9110 5.5); str.strip()
        # would also take Unicode spaces (U+00A0, U+3000) that the client sent.
        value = values[0].strip(" \t") if values else ""
    else:
        value = (inputs.client or {}).get(slot.name)
    if value is None or value in ("", [], {}):
        raise MissingClaimInput(name)
    if isinstance(value, str):
        if len(value) > MAX_INPUT:
            raise MissingClaimInput(name, f"longer than {MAX_INPUT} characters")
        if _UNPRINTABLE.search(value):
            raise MissingClaimInput(name, "not printable UTF-8 text")
    return value


def _fill(node: Any, values: Mapping[Slot, Any]) -> Any:
    if isinstance(node, _Text):
        if len(node.parts) == 1:
            assert isinstance(node.parts[0], Slot)
            return values[node.parts[0]]
        return "".join(p if isinstance(p, str) else _as_text(values[p]) for p in node.parts)
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
