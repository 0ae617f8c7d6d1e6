"""Response scrubbing: no credential the gateway put on a request comes back.

An upstream that echoes the request (httpbin's ``/anything``, a 401 whose
``WWW-Authenticate`` quotes the token, an AWS error holding the canonical request) would
hand the client the credential it was never meant to hold. In the response to a routed
flow, each credential the gateway sent is replaced in the header values, the trailers
and the body (decoded per ``Content-Encoding``) before the client, mitmweb, the console
or ``-w`` sees it: as sent, and in the forms an echo writes it (JSON string escapes,
``\\/`` and ``\\uXXXX``, percent-encoding in either case, ``+`` for a space).

A credential's form is a pattern of one group per character: a character that no
escaping changes (``A-Za-z0-9-._``; not ``~``, which PHP and HTML forms write as
``%7E``) stands for itself, any other for each of its
escapes. A JWT is all such characters, so it is found with ``bytes.replace``. Before a
pattern runs, its longest unescaped run (the *anchor*) must be in the text: a response
without the credential costs one ``bytes.find`` per credential (``find``, not ``in``:
``in`` first tries its operand as an integer, and that failure costs as much again), and
a pattern is compiled only when its anchor is found.

A streamed body (``stream_large_bodies``, or an addon's ``stream = True``) is scrubbed
chunk by chunk, keeping back as many bytes as the longest form may span. Its length went
out with the headers, so there a replacement is fitted to the length of what it replaces;
an encoded stream is decoded as it goes and sent without ``Content-Encoding`` and
``Content-Length``.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any

from mitmproxy import http
from mitmproxy.net import encoding

from authgw.flowstate import FlowState
from authgw.httpsyntax import may_stream
from authgw.steps import answer
from authgw.tokens import TokenUnavailable, fingerprint

logger = logging.getLogger(__name__)

_chain = chain.from_iterable
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")
_WIDEST = 12  # bytes a form may take per byte: "\ud83d\ude00" for a 4-byte character


class Unscrubbable(TokenUnavailable):
    """A response body that cannot be decoded, so cannot be checked (answered 502)."""

    def __init__(self, message: str) -> None:
        super().__init__("unscrubbable_response", message)


def _hex(byte: int) -> bytes:
    """``2f`` as ``[2][fF]``: hex digits in either case."""
    return b"".join(
        b"[%c%c]" % (c, c ^ 0x20) if chr(c).isalpha() else bytes((c,)) for c in b"%02x" % byte
    )


def _char(ch: str) -> bytes:
    """The pattern of one character of a credential: itself, or each of its escapes."""
    raw = ch.encode("utf-8", "surrogateescape")
    if len(raw) == 1 and raw[0] in _PLAIN:
        return raw
    forms = [re.escape(raw), b"".join(b"%" + _hex(b) for b in raw)]
    units = ch.encode("utf-16-be", "surrogatepass")
    forms.append(
        b"".join(b"\\\\u" + _hex(units[i]) + _hex(units[i + 1]) for i in range(0, len(units), 2))
    )
    if ch in '/"\\':
        forms.append(re.escape(b"\\" + raw))
    if ch == " ":
        forms.append(re.escape(b"+"))
    return b"(?:" + b"|".join(forms) + b")"


@dataclass(frozen=True)
class Secret:
    """One credential to scrub: its bytes, their replacement, and how to find them."""

    value: bytes
    replacement: bytes
    anchor: bytes  # the longest run no escaping changes: must be in a text that holds it
    plain: bool  # every character stands for itself: bytes.replace finds every form

    @property
    def widest(self) -> int:
        """An upper bound of the length of any of its forms."""
        return len(self.value) * (1 if self.plain else _WIDEST)

    def sub(self, data: bytes, fit: bool = False) -> bytes:
        """``data`` with every form replaced (``fit``: each by a replacement of its length)."""
        if data.find(self.anchor) < 0:
            return data
        if self.plain:
            return data.replace(self.value, _fitted(self.replacement, len(self.value), fit))
        scrubbed, found = _pattern(self.value).subn(
            lambda m: _fitted(self.replacement, m.end() - m.start(), fit), data
        )
        return scrubbed if found else data  # the same object when nothing was found


def _fitted(replacement: bytes, length: int, fit: bool) -> bytes:
    """``replacement`` cut or padded with ``*`` to ``length`` bytes (when ``fit``)."""
    if not fit or length == len(replacement):
        return replacement
    if length <= 2:
        return b"*" * length
    return (replacement[:-1] + b"*" * length)[: length - 1] + replacement[-1:]


@lru_cache(maxsize=64)
def _pattern(value: bytes) -> re.Pattern[bytes]:
    text = value.decode("utf-8", "surrogateescape")
    return re.compile(b"".join(_char(ch) for ch in text))


@lru_cache(maxsize=4096)
def secret(value: str, replacement: str | None = None) -> Secret:
    """The ``Secret`` for a credential, replaced by ``replacement`` or by its redaction
    text (``<authgw redacted sha256:...>``)."""
    raw = value.encode("utf-8", "surrogateescape")
    runs = re.findall(rb"[A-Za-z0-9._-]+", raw)
    anchor = max(runs, key=len) if runs else b""
    shown = replacement if replacement is not None else f"<authgw redacted {fingerprint(value)}>"
    return Secret(raw, shown.encode("utf-8", "surrogateescape"), anchor, anchor == raw)


def secrets_of(state: FlowState) -> tuple[Secret, ...]:
    """What the gateway put on the flow's request: its token (and a basic token's
    password), replaced by the route's placeholder where it has one; or a sigv4 route's
    session token and signature."""
    token = state.token
    if token is not None:
        shown = state.route.placeholder if state.route is not None else None
        found = [secret(token.value, shown)]
        if token.password is not None:
            found.append(secret(token.password, shown))
        found += [secret(sent, client) for sent, client in state.placed]  # Basic, rewritten
        return tuple(found)
    if state.sigv4 is not None:
        return tuple(secret(s) for s in (state.sigv4.token, state.signature) if s)
    return ()


def text(data: bytes, secrets: Sequence[Secret]) -> bytes:
    """``data`` with every secret replaced; ``data`` itself when none is in it."""
    for s in secrets:
        data = s.sub(data)
    return data


def fields(
    fields: tuple[tuple[bytes, bytes], ...], secrets: Sequence[Secret]
) -> tuple[tuple[bytes, bytes], ...] | None:
    """Header fields with every secret replaced in their values; None if none was there."""
    blob = b"".join(_chain(fields))  # names and values: one search for all of them
    for s in secrets:
        if blob.find(s.anchor) >= 0:
            scrubbed = tuple((n, text(v, secrets)) for n, v in fields)
            return scrubbed if scrubbed != fields else None
    return None


def headers(headers: http.Headers, secrets: Sequence[Secret]) -> None:
    scrubbed = fields(headers.fields, secrets)
    if scrubbed is not None:
        headers.fields = scrubbed


def response(resp: http.Response, secrets: Sequence[Secret]) -> None:
    """Scrub a whole response: headers, trailers and (unless it was streamed) its body,
    decoded and re-encoded. Raises ``Unscrubbable`` for a body that cannot be decoded."""
    # Every response passes here: the common path (no credential, no Content-Encoding) is
    # one join and one `in` per credential for the head, one `in` for the body, and reads
    # resp.data's attributes rather than Response's properties (each a Python call).
    data = resp.data
    blob = b"".join(_chain(data.headers.fields))  # names and values: one search for all
    for s in secrets:
        if blob.find(s.anchor) >= 0:
            headers(data.headers, secrets)
            break
    if data.trailers:
        headers(data.trailers, secrets)
    raw = data.content
    if not raw or resp.stream:  # a streamed body was scrubbed on its way (Stream)
        return
    if blob.lower().find(b"content-encoding") < 0:
        for s in secrets:
            if raw.find(s.anchor) >= 0:
                resp.content = text(raw, secrets)  # Content-Length follows
                break
        return
    try:
        body = resp.get_content(strict=True)
    except ValueError:
        raise Unscrubbable(
            f"the response's Content-Encoding ({resp.headers.get('content-encoding')!r}) "
            "cannot be decoded, so its body cannot be checked for the credential"
        ) from None
    assert body is not None
    scrubbed = text(body, secrets)
    if scrubbed is not body:
        resp.content = scrubbed


_Chunks = bytes | Iterable[bytes]


def _decoder(name: str) -> Callable[[bytes], bytes] | None:
    """An incremental decoder for a Content-Encoding; None for one it has none for."""
    if name == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if name == "deflate":
        return _Deflate()
    codecs: Any = encoding  # the brotli and zstd modules mitmproxy itself decodes with
    if name == "br":
        return codecs.brotli.Decompressor().process  # type: ignore[no-any-return]
    if name == "zstd":
        zstd = codecs.zstd.ZstdDecompressor()
        # zstandard (mitmproxy 11) has decompressobj(); compression.zstd (12) decodes as is
        return (zstd.decompressobj() if hasattr(zstd, "decompressobj") else zstd).decompress  # type: ignore[no-any-return]
    return None


class _Deflate:
    """``deflate`` as mitmproxy reads it: zlib-wrapped, or raw as some servers send it."""

    def __init__(self) -> None:
        self._inner: Callable[[bytes], bytes] | None = None

    def __call__(self, data: bytes) -> bytes:
        if self._inner is None:  # RFC 1950's header: CM 8, and a multiple of 31
            zlib_header = (
                len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            )
            wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
            self._inner = zlib.decompressobj(wbits).decompress
        return self._inner(data)


class Stream:
    """A streamed body's ``stream`` callable: decodes (if it must), scrubs, and holds back
    the bytes a form cut by a chunk boundary may span; wraps an addon's own callable."""

    def __init__(
        self,
        secrets: Sequence[Secret],
        decode: Callable[[bytes], bytes] | None,
        inner: Callable[[bytes], _Chunks] | None,
    ) -> None:
        self._secrets = secrets
        self._keep = max(s.widest for s in secrets)
        self._decode = decode
        self._inner = inner
        self._held = b""
        self._broken = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        end = chunk == b""
        if self._inner is not None:
            got = self._inner(chunk)
            data = got if isinstance(got, bytes) else b"".join(got)
        else:
            data = chunk
        if self._decode is not None and data and not self._broken:
            try:
                data = self._decode(data)
            except Exception:  # noqa: BLE001 - a broken stream: nothing more of it goes out
                self._broken = True
                logger.warning("authgw: a streamed response body could not be decoded; cut")
        if self._broken:
            data = b""
        buf = self._held + data
        for s in self._secrets:
            buf = s.sub(buf, fit=True)
        cut = len(buf) if end else max(0, len(buf) - self._keep)
        out, self._held = buf[:cut], buf[cut:]
        return [out] if out else []


def on_headers(flow: http.HTTPFlow, state: FlowState, *, streaming: bool) -> None:
    """``responseheaders`` of a routed flow: a response that is or may be streamed has its
    headers scrubbed now (they go out before ``response``) and its body wrapped."""
    resp, route = flow.response, state.route
    if resp is None or route is None or not route.scrub_responses:
        return
    # mitmproxy would start streaming such a body without a hook: from its start here
    if resp.stream or may_stream(flow.request, resp, streaming):
        secrets = secrets_of(state)
        try:
            wrapped = not secrets or stream(resp, secrets)
        except Exception:  # noqa: BLE001 - fail closed: an unchecked stream is not sent
            wrapped = False
        if not wrapped:
            state.record.error_class = "unscrubbable_response"
            logger.warning(
                "authgw: route %s: a streamed response (Content-Encoding %r) cannot be "
                "checked for the credential as it goes; killed",
                route.name,
                resp.headers.get("content-encoding"),
            )
            resp.stream = _nothing  # were the kill too late, nothing of the body goes out
            if flow.killable:
                flow.kill()  # type: ignore[no-untyped-call]


def on_response(flow: http.HTTPFlow, state: FlowState) -> None:
    """``response`` of a routed flow: scrubbed whole, or answered 502 if its body cannot
    be decoded (and so not checked)."""
    resp, route = flow.response, state.route
    if resp is None or route is None or not route.scrub_responses:
        return
    token = state.token  # most flows: one token, without secrets_of's call
    if token is not None and token.password is None and route.placeholder is None:  # no .placed
        secrets: tuple[Secret, ...] = (secret(token.value),)
    else:
        secrets = secrets_of(state)
    if not secrets:
        return
    try:
        response(resp, secrets)
    except Exception as e:  # noqa: BLE001 - fail closed: what was not checked is not sent
        if not isinstance(e, Unscrubbable):  # mitmproxy's decode raises TypeError too
            e = Unscrubbable(f"the response could not be checked ({type(e).__name__})")
        state.record.error_class = e.error_class
        logger.warning("authgw: route %s: %s; answered 502", route.name, e)
        answer(
            flow,
            502,
            f"response withheld (route {route.name}: {e.error_class})",
            {"X-Authgw-Error": e.error_class},
        )


def _nothing(chunk: bytes) -> list[bytes]:
    return []


def stream(resp: http.Response, secrets: Sequence[Secret]) -> bool:
    """A response about to be streamed (its headers are about to go out): scrub the headers
    and wrap the body; False for a body in an encoding it cannot decode as it goes."""
    headers(resp.headers, secrets)
    if isinstance(resp.stream, Stream):
        return True
    if not resp.stream:
        resp.stream = True  # may_stream: from its start, not once mitmproxy has some
    name = resp.headers.get("content-encoding", "").strip().lower()
    decode = None
    if name not in ("", "identity"):
        decode = _decoder(name)
        if decode is None:
            return False
        del resp.headers["content-encoding"]
        resp.headers.pop("content-length", None)
        if resp.http_version == "HTTP/1.1" and "transfer-encoding" not in resp.headers:
            resp.headers["transfer-encoding"] = "chunked"
    inner = resp.stream if callable(resp.stream) else None
    resp.stream = Stream(secrets, decode, inner)
    return True
