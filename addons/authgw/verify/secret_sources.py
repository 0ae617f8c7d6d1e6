"""Where the CLI reads a secret from (its SRC): ``env:``, ``file:``, ``cmd:``,
``aws_secretsmanager:``, ``aws_ssm:`` or ``config:``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from authgw import config as configmod
from authgw.config import SecretRef
from authgw.kinds import kind_of
from authgw.sources.base import SecretReader
from authgw.sources.remote import ReadFailed, fetcher
from authgw.tokens import MissingSecret
from authgw.verify.errors import SecretUnavailable
from authgw.verify.text import printable

SourceKind = Literal["env", "file", "cmd", "config", "aws_secretsmanager", "aws_ssm"]
_FORMS = (
    "env:NAME, file:PATH, cmd:COMMAND, aws_secretsmanager:NAME, aws_ssm:NAME or config:FILE#route"
)


@dataclass(frozen=True)
class SecretSource:
    """``env:NAME``, ``file:PATH``, ``cmd:COMMAND``, ``aws_secretsmanager:NAME``,
    ``aws_ssm:NAME`` or ``config:FILE#route``.

    ``env:`` and ``file:`` are read as the gateway reads ``{env: ...}`` and
    ``{file: ...}`` (one trailing newline dropped). ``cmd:`` runs COMMAND with
    ``/bin/sh -c`` and takes its stdout, one trailing newline dropped; the AWS ones are
    read as the gateway reads them (SecretString, or ``NAME#field`` for a JSON field of it;
    SSM decrypted). ``config:``
    reads the hmac ``secret`` or static ``value`` of that route in that config.
    ``str()`` is the text as given; it names where the secret is, never the secret.
    """

    kind: SourceKind
    target: str
    route: str = ""

    @classmethod
    def parse(cls, text: str) -> SecretSource:
        """``ValueError`` saying the expected forms if ``text`` is none of them."""
        kind, sep, target = text.partition(":")
        if not sep or not target:
            raise ValueError(f"{printable(text)}: expected {_FORMS}")
        if kind in ("env", "file", "cmd", "aws_secretsmanager", "aws_ssm"):
            return cls(cast(SourceKind, kind), target)
        if kind == "config":
            path, sep, route = target.rpartition("#")
            if not sep or not path or not route:
                raise ValueError(f"{printable(text)}: expected config:FILE#route")
            return cls("config", path, route)
        raise ValueError(
            f"{printable(text)}: unknown source {printable(kind)!r}; expected {_FORMS}"
        )

    def __str__(self) -> str:
        suffix = f"#{self.route}" if self.kind == "config" else ""
        return f"{self.kind}:{self.target}{suffix}"

    def read(self, *, timeout: float = 10.0) -> bytes:
        """The secret's bytes, or ``SecretUnavailable`` saying why not (never with the secret)."""
        if self.kind in ("cmd", "aws_secretsmanager", "aws_ssm"):
            name, field = self.target, None
            if self.kind == "aws_secretsmanager" and "#" in name:
                name, _, field = name.rpartition("#")  # NAME#field: a JSON field of it
            ref = SecretRef(kind=self.kind, name=name, field=field or None, timeout=timeout)
            try:
                return fetcher(ref)()
            except ReadFailed as e:
                raise SecretUnavailable(str(e)) from None
        if self.kind == "config":
            ref = _config_secret(self.target, self.route)
        elif self.kind == "env":
            ref = SecretRef(kind="env", name=self.target)
        else:
            ref = SecretRef(kind="file", name=str(Path(self.target).expanduser()))
        try:
            return SecretReader(ref).read()
        except MissingSecret as e:
            raise SecretUnavailable(str(e)) from None


def _config_secret(path: str, route_name: str) -> SecretRef:
    try:
        cfg = configmod.load(path)
    except configmod.ConfigError as e:
        raise SecretUnavailable(f"{path}: {e}") from None
    for route in cfg.routes:
        if route.name == route_name:
            token = route.token
            if token is None:
                if route.verify is not None and route.verify.secret is not None:
                    return route.verify.secret
                raise SecretUnavailable(f"route {route_name} has no shared secret")
            shared = kind_of(token).shared_secret(token)
            if shared is None:
                reason = f"route {route_name} is type {token.type}: it has no shared secret"
                raise SecretUnavailable(reason)
            return shared
    names = ", ".join(r.name for r in cfg.routes)
    raise SecretUnavailable(f"{path} has no route {printable(route_name)} (routes: {names})")
