"""The gateway's YAML config (version 1) as validated, frozen dataclasses.

``load(path)`` and ``parse(text)`` either return a ``Config`` or raise ``ConfigError``
naming the field path and the reason, with the line in the file where ruamel.yaml
knows it: ``routes[1].token.algorithm: HS999 is not one of HS256, HS384, HS512
(gateway.yaml:14)``. Parsing never reads secrets; ``sources.build`` does that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from authgw.hosts import HostPattern, parse_host_port

DYNAMIC: Literal["dynamic"] = "dynamic"
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
STS_ALGORITHMS = ("RS256", "ES384")
_ROUTE_NAME = re.compile(r"[a-z0-9_]+")
# RFC 9110 token characters: what a header field name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TAG_KEY = re.compile(r"[\w.:/=+\-@ ]{1,128}")


class ConfigError(ValueError):
    """The config file is unreadable or invalid; says which field and why."""

    def __init__(self, path: str, reason: str, *, file: str | None = None, line: int | None = None):
        self.path = path
        self.reason = reason
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f" ({file}:{line})" if line is not None else f" ({file})"
        super().__init__(f"{path}: {reason}{where}" if path else f"{reason}{where}")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. A literal's value is kept out of ``repr``."""

    kind: Literal["env", "file", "literal"]
    name: str = ""
    literal: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.kind == "env":
            return f"env {self.name}"
        if self.kind == "file":
            return f"file {self.name}"
        return "a literal in the config file"


@dataclass(frozen=True)
class HmacTokenConfig:
    secret: SecretRef
    optional: bool = False
    algorithm: str = "HS256"
    claims: Mapping[str, Any] = field(default_factory=dict)
    lifetime: int | None = None
    audience: str | None = None  # a literal, or DYNAMIC
    kid: str = "fingerprint"  # "fingerprint" | "none" | a literal
    type: Literal["hmac"] = "hmac"


@dataclass(frozen=True)
class StsTokenConfig:
    audience: tuple[str, ...] | Literal["dynamic"]
    signing_algorithm: str = "RS256"
    duration: int = 300
    tags: tuple[tuple[str, str], ...] = ()
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    max_attempts: int = 2
    type: Literal["sts"] = "sts"


@dataclass(frozen=True)
class StaticTokenConfig:
    value: SecretRef
    type: Literal["static"] = "static"


TokenConfig = HmacTokenConfig | StsTokenConfig | StaticTokenConfig


@dataclass(frozen=True)
class VerifyConfig:
    """Check the bearer token clients send to a route's hosts (``verify:``)."""

    secret: SecretRef | None = None  # an HMAC secret ...
    jwks: str | None = None  # ... or a JWKS: an http(s) URL or a file path
    audience: str | None = None  # a literal, or DYNAMIC
    issuer: str | None = None
    enforce: bool = False  # false: observe (flow log, metrics); true: 401 on failure


@dataclass(frozen=True)
class Route:
    name: str
    hosts: tuple[HostPattern, ...]
    token: TokenConfig | None = None  # None: a verify-only route
    header: str = "Authorization"
    prefix: str = "Bearer "
    keep_inbound_as: str | None = None  # None: inbound value dropped ("replace")
    allow_http: bool = False
    verify: VerifyConfig | None = None


@dataclass(frozen=True)
class CacheSettings:
    max_entries: int = 1024
    refresh_ahead: float = 60.0
    min_ttl: float = 10.0
    error_backoff: float = 5.0


@dataclass(frozen=True)
class Config:
    routes: tuple[Route, ...]
    unmatched: Literal["passthrough", "reject"] = "passthrough"
    upstream_header: str | None = "X-Upstream-Host"
    upstream_scheme: Literal["http", "https"] = "https"
    cache: CacheSettings = CacheSettings()
    flowlog: Path | None = None
    metrics: tuple[str, int] | None = None
    base_dir: Path = Path(".")
    warnings: tuple[str, ...] = ()


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
        reason = f"not valid YAML: {e.problem or e.context}"
        raise ConfigError("", reason, file=file, line=line) from e
    except YAMLError as e:
        raise ConfigError("", f"not valid YAML: {e}", file=file) from e
    return _Parser(file, base_dir).config(data)


class _Parser:
    """One ``_<thing>`` method per part of the file, each raising its own precise error."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.warnings: list[str] = []

    # -- helpers -------------------------------------------------------------

    def error(self, path: str, reason: str, parent: Any = None, key: Any = None) -> ConfigError:
        return ConfigError(path, reason, file=self.file, line=_line(parent, key))

    def mapping(
        self, value: Any, path: str, allowed: Sequence[str], parent: Any = None, key: Any = None
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping, not {_kind(value)}", parent, key)
        for k in value:
            if not isinstance(k, str) or k not in allowed:
                where = f"{path}.{k}" if path else str(k)
                raise self.error(
                    where, f"unknown key; expected one of {', '.join(allowed)}", value, k
                )
        return value

    def optional_str(
        self, m: Mapping[str, Any], key: str, path: str, default: str | None
    ) -> str | None:
        value = m.get(key, default)
        if value is None or isinstance(value, str):
            return value
        raise self.error(_join(path, key), f"must be a string, not {_kind(value)}", m, key)

    def string(self, m: Mapping[str, Any], key: str, path: str, default: str) -> str:
        value = self.optional_str(m, key, path, default)
        if value is None:
            raise self.error(_join(path, key), "must be a string, not null", m, key)
        return value

    def choice(
        self, m: Mapping[str, Any], key: str, path: str, options: Sequence[str], default: str
    ) -> str:
        value = m.get(key, default)
        if value not in options:
            raise self.error(
                _join(path, key), f"{_show(value)} is not one of {', '.join(options)}", m, key
            )
        return str(value)

    def boolean(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = m.get(key, default)
        if not isinstance(value, bool):
            raise self.error(_join(path, key), f"must be true or false, not {_show(value)}", m, key)
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
            raise self.error(_join(path, key), f"must be {kind}, not {_show(value)}", m, key)
        if value < low or (high is not None and value > high):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise self.error(_join(path, key), f"{value:g} is out of range ({bound})", m, key)
        return value

    # -- the file ------------------------------------------------------------

    def config(self, data: Any) -> Config:
        top = self.mapping(
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
            ),
        )
        if "version" not in top:
            raise self.error("version", "is required (version: 1)")
        if top["version"] != 1 or isinstance(top["version"], bool):
            raise self.error(
                "version", f"{_show(top['version'])} is not supported (only 1)", top, "version"
            )
        cache = self._cache(top)
        upstream_header = self.optional_str(top, "upstream_header", "", "X-Upstream-Host")
        if upstream_header is not None:
            self._header_name(upstream_header, "upstream_header", top, "upstream_header")
        flowlog = self.optional_str(top, "flowlog", "", None)
        metrics = self.optional_str(top, "metrics", "", None)
        return Config(
            routes=self._routes(top, cache),
            unmatched="reject"
            if self.choice(top, "unmatched", "", ("passthrough", "reject"), "passthrough")
            == "reject"
            else "passthrough",
            upstream_header=upstream_header,
            upstream_scheme="http"
            if self.choice(top, "upstream_scheme", "", ("https", "http"), "https") == "http"
            else "https",
            cache=cache,
            flowlog=self.path(flowlog) if flowlog else None,
            metrics=self._listen_address(metrics, "metrics", top) if metrics else None,
            base_dir=self.base_dir,
            warnings=tuple(self.warnings),
        )

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def _listen_address(self, value: str, path: str, parent: Any) -> tuple[str, int]:
        try:
            host, port = parse_host_port(value)
        except ValueError as e:
            raise self.error(path, f"{e} (expected host:port)", parent, path) from e
        if port is None:
            raise self.error(path, f"{_show(value)} has no port (expected host:port)", parent, path)
        return host, port

    def _cache(self, top: Mapping[str, Any]) -> CacheSettings:
        raw = top.get("cache") or {}
        m = self.mapping(
            raw, "cache", ("max_entries", "refresh_ahead", "min_ttl", "error_backoff"), top, "cache"
        )
        d = CacheSettings()
        return CacheSettings(
            max_entries=int(
                self.number(
                    m, "max_entries", "cache", d.max_entries, low=1, high=10_000_000, integer=True
                )
                or d.max_entries
            ),
            refresh_ahead=float(
                self.number(m, "refresh_ahead", "cache", d.refresh_ahead, low=0, high=86_400) or 0
            ),
            min_ttl=float(self.number(m, "min_ttl", "cache", d.min_ttl, low=0, high=86_400) or 0),
            error_backoff=float(
                self.number(m, "error_backoff", "cache", d.error_backoff, low=0, high=3_600) or 0
            ),
        )

    def _routes(self, top: Mapping[str, Any], cache: CacheSettings) -> tuple[Route, ...]:
        raw = top.get("routes")
        if raw is None:
            raise self.error("routes", "is required (a list of routes)")
        if not isinstance(raw, list):
            raise self.error("routes", f"must be a list, not {_kind(raw)}", top, "routes")
        routes: list[Route] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            route = self._route(item, f"routes[{i}]", raw, i, cache)
            if route.name in seen:
                raise self.error(
                    f"routes[{i}].name",
                    f"{route.name!r} is used by an earlier route; names must be unique",
                    item,
                    "name",
                )
            seen.add(route.name)
            routes.append(route)
        return tuple(routes)

    def _route(self, raw: Any, path: str, parent: Any, index: int, cache: CacheSettings) -> Route:
        m = self.mapping(
            raw,
            path,
            ("name", "hosts", "header", "prefix", "inbound", "allow_http", "token", "verify"),
            parent,
            index,
        )
        if "name" not in m:
            raise self.error(f"{path}.name", "is required", parent, index)
        name = self.string(m, "name", path, "")
        if not _ROUTE_NAME.fullmatch(name):
            raise self.error(f"{path}.name", f"{name!r} must match [a-z0-9_]+", m, "name")
        header = self.string(m, "header", path, "Authorization")
        self._header_name(header, f"{path}.header", m, "header")
        prefix = self.string(m, "prefix", path, "Bearer ")
        if any(c in prefix for c in "\r\n\0"):
            raise self.error(f"{path}.prefix", "must not contain CR, LF or NUL", m, "prefix")
        if "token" not in m and "verify" not in m:
            raise self.error(f"{path}.token", "is required (or verify:, or both)", parent, index)
        return Route(
            name=name,
            hosts=self._hosts(m, path),
            header=header,
            prefix=prefix,
            keep_inbound_as=self._inbound(m, path, header),
            allow_http=self.boolean(m, "allow_http", path, False),
            token=self._token(m["token"], f"{path}.token", m, cache) if "token" in m else None,
            verify=self._verify(m["verify"], f"{path}.verify", m) if "verify" in m else None,
        )

    def _verify(self, raw: Any, path: str, parent: Any) -> VerifyConfig:
        m = self.mapping(
            raw, path, ("secret", "jwks", "audience", "issuer", "enforce"), parent, "verify"
        )
        if ("secret" in m) == ("jwks" in m):
            raise self.error(path, "needs exactly one of secret, jwks", parent, "verify")
        jwks = self.optional_str(m, "jwks", path, None)
        if jwks is not None and not re.match(r"https?://", jwks):
            jwks = str(self.path(jwks))
        audience = self.optional_str(m, "audience", path, None)
        issuer = self.optional_str(m, "issuer", path, None)
        for key, value in (("audience", audience), ("issuer", issuer), ("jwks", jwks)):
            if value == "":
                raise self.error(_join(path, key), "must not be empty", m, key)
        return VerifyConfig(
            secret=self._secret(m, "secret", path) if "secret" in m else None,
            jwks=jwks,
            audience=audience,
            issuer=issuer,
            enforce=self.boolean(m, "enforce", path, False),
        )

    def _header_name(self, value: str, path: str, parent: Any, key: Any) -> None:
        if not _HEADER_NAME.fullmatch(value):
            raise self.error(path, f"{value!r} is not a valid header name", parent, key)

    def _hosts(self, m: Mapping[str, Any], path: str) -> tuple[HostPattern, ...]:
        raw = m.get("hosts")
        if not isinstance(raw, list) or not raw:
            raise self.error(
                f"{path}.hosts", "must be a non-empty list of host patterns", m, "hosts"
            )
        patterns = []
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                raise self.error(
                    f"{path}.hosts[{i}]", f"must be a string, not {_kind(item)}", raw, i
                )
            try:
                patterns.append(HostPattern.parse(item))
            except ValueError as e:
                raise self.error(f"{path}.hosts[{i}]", str(e), raw, i) from e
        return tuple(patterns)

    def _inbound(self, m: Mapping[str, Any], path: str, header: str) -> str | None:
        value = self.string(m, "inbound", path, "replace")
        if value == "replace":
            return None
        name = value.removeprefix("keep-as:").strip()
        if not value.startswith("keep-as:") or not name:
            raise self.error(
                f"{path}.inbound",
                f"{value!r} is not replace or keep-as:<Header-Name>",
                m,
                "inbound",
            )
        self._header_name(name, f"{path}.inbound", m, "inbound")
        if name.lower() == header.lower():
            raise self.error(
                f"{path}.inbound", f"keep-as:{name} is the header the token goes in", m, "inbound"
            )
        return name

    def _token(self, raw: Any, path: str, parent: Any, cache: CacheSettings) -> TokenConfig:
        if not isinstance(raw, Mapping):
            raise self.error(path, f"must be a mapping, not {_kind(raw)}", parent, "token")
        kind = raw.get("type")
        if kind == "hmac":
            return self._hmac(raw, path, parent, cache)
        if kind == "sts":
            return self._sts(raw, path, parent, cache)
        if kind == "static":
            m = self.mapping(raw, path, ("type", "value"), parent, "token")
            return StaticTokenConfig(value=self._secret(m, "value", path))
        raise self.error(
            f"{path}.type", f"{_show(kind)} is not one of hmac, sts, static", raw, "type"
        )

    def _hmac(self, raw: Any, path: str, parent: Any, cache: CacheSettings) -> HmacTokenConfig:
        m = self.mapping(
            raw,
            path,
            ("type", "secret", "optional", "algorithm", "claims", "lifetime", "audience", "kid"),
            parent,
            "token",
        )
        claims = m.get("claims") or {}
        if not isinstance(claims, Mapping) or not all(isinstance(k, str) for k in claims):
            raise self.error(
                f"{path}.claims", "must be a mapping of claim names to values", m, "claims"
            )
        reserved = {"iat", "exp", "aud"} & set(claims)
        if reserved:
            raise self.error(
                f"{path}.claims",
                f"{', '.join(sorted(reserved))} are set by lifetime and audience, not claims",
                m,
                "claims",
            )
        lifetime = self.number(m, "lifetime", path, None, low=1, high=31_536_000, integer=True)
        if lifetime is not None and lifetime <= cache.min_ttl:
            raise self.error(
                f"{path}.lifetime",
                f"{lifetime:g} is not above cache.min_ttl "
                f"({cache.min_ttl:g}): no token would ever be usable",
                m,
                "lifetime",
            )
        audience = self.optional_str(m, "audience", path, None)
        if audience == "":
            raise self.error(f"{path}.audience", "must not be empty", m, "audience")
        kid = self.string(m, "kid", path, "fingerprint")
        if not kid:
            raise self.error(f"{path}.kid", "must not be empty (use none for no kid)", m, "kid")
        return HmacTokenConfig(
            secret=self._secret(m, "secret", path),
            optional=self.boolean(m, "optional", path, False),
            algorithm=self.choice(m, "algorithm", path, HMAC_ALGORITHMS, "HS256"),
            claims=_plain(claims),
            lifetime=None if lifetime is None else int(lifetime),
            audience=audience,
            kid=kid,
        )

    def _sts(self, raw: Any, path: str, parent: Any, cache: CacheSettings) -> StsTokenConfig:
        m = self.mapping(
            raw,
            path,
            (
                "type",
                "audience",
                "signing_algorithm",
                "duration",
                "tags",
                "region",
                "profile",
                "endpoint_url",
                "connect_timeout",
                "read_timeout",
                "max_attempts",
            ),
            parent,
            "token",
        )
        duration = int(
            self.number(m, "duration", path, 300, low=60, high=3600, integer=True) or 300
        )
        if duration <= cache.min_ttl:
            raise self.error(
                f"{path}.duration",
                f"{duration} is not above cache.min_ttl "
                f"({cache.min_ttl:g}): no token would ever be usable",
                m,
                "duration",
            )
        endpoint_url = self.optional_str(m, "endpoint_url", path, None)
        if endpoint_url is not None and not re.match(r"https?://[^/\s]+", endpoint_url):
            raise self.error(
                f"{path}.endpoint_url", f"{endpoint_url!r} is not an http(s) URL", m, "endpoint_url"
            )
        return StsTokenConfig(
            audience=self._sts_audience(m, path),
            signing_algorithm=self.choice(m, "signing_algorithm", path, STS_ALGORITHMS, "RS256"),
            duration=duration,
            tags=self._tags(m, path),
            region=self.optional_str(m, "region", path, None),
            profile=self.optional_str(m, "profile", path, None),
            endpoint_url=endpoint_url,
            connect_timeout=float(
                self.number(m, "connect_timeout", path, 2.0, low=0.1, high=60) or 2.0
            ),
            read_timeout=float(self.number(m, "read_timeout", path, 5.0, low=0.1, high=60) or 5.0),
            max_attempts=int(
                self.number(m, "max_attempts", path, 2, low=1, high=10, integer=True) or 2
            ),
        )

    def _sts_audience(
        self, m: Mapping[str, Any], path: str
    ) -> tuple[str, ...] | Literal["dynamic"]:
        raw = m.get("audience")
        if raw == DYNAMIC:
            return DYNAMIC
        if isinstance(raw, str):
            raw = [raw]
        if (
            not isinstance(raw, list)
            or not 1 <= len(raw) <= 10
            or not all(isinstance(a, str) and a for a in raw)
        ):
            raise self.error(
                f"{path}.audience",
                "must be dynamic or a list of 1 to 10 non-empty strings",
                m,
                "audience",
            )
        return tuple(raw)

    def _tags(self, m: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
        raw = m.get("tags") or {}
        if not isinstance(raw, Mapping):
            raise self.error(f"{path}.tags", "must be a mapping of tag keys to values", m, "tags")
        if len(raw) > 50:
            raise self.error(
                f"{path}.tags", f"has {len(raw)} tags; STS takes at most 50", m, "tags"
            )
        tags = []
        for k, v in raw.items():
            if not isinstance(k, str) or not _TAG_KEY.fullmatch(k):
                raise self.error(
                    f"{path}.tags.{k}",
                    "is not a valid tag key (1-128 letters, digits, spaces and _.:/=+-@)",
                    raw,
                    k,
                )
            if isinstance(v, bool) or not isinstance(v, str | int | float) or len(str(v)) > 256:
                raise self.error(
                    f"{path}.tags.{k}", "must be a string of at most 256 characters", raw, k
                )
            tags.append((k, str(v)))
        return tuple(sorted(tags))

    def _secret(self, m: Mapping[str, Any], key: str, path: str) -> SecretRef:
        where = _join(path, key)
        if key not in m or m[key] is None:
            raise self.error(where, "is required: {env: NAME}, {file: PATH} or a string", m, key)
        raw = m[key]
        if isinstance(raw, str):
            if not raw:
                raise self.error(where, "must not be empty", m, key)
            self.warnings.append(
                f"{where} is a literal in the config file; prefer {{env: NAME}} or "
                "{file: PATH} so the secret stays out of the file"
            )
            return SecretRef(kind="literal", literal=raw)
        ref = self.mapping(raw, where, ("env", "file"), m, key)
        if len(ref) != 1:
            raise self.error(where, "must have exactly one of env, file", m, key)
        kind, value = next(iter(ref.items()))
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}.{kind}", "must be a non-empty string", ref, kind)
        if kind == "env":
            return SecretRef(kind="env", name=value)
        return SecretRef(kind="file", name=str(self.path(value)))


def _join(path: str, key: str) -> str:
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


def _kind(value: Any) -> str:
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


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping | list):
        return _kind(value)
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _plain(value: Any) -> Any:
    """ruamel's CommentedMap/Seq and scalar subclasses into plain JSON-able values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
