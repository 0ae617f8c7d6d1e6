"""One ``GetWebIdentityToken`` request: its parameters, their validation, its record.

Parameters are read from a query-protocol form (``Audience.member.N``,
``Tags.member.N.Key``) as sent; ``validate`` then lists every constraint of the
service model they break, worded the way AWS words it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

SIGNING_ALGORITHMS = ("RS256", "ES384")
DEFAULT_DURATION = 300
MIN_DURATION = 60
MAX_DURATION = 3600
MAX_AUDIENCES = 10
MAX_TAGS = 50
RESULT_OK = "OK"

_TAG_PUNCTUATION = frozenset("_.:/=+-@")


@dataclass(frozen=True)
class CallRecord:
    """One ``GetWebIdentityToken`` request as the emulator saw it."""

    audiences: tuple[str, ...]
    algorithm: str
    duration: int | None  # None when DurationSeconds was not an integer
    tags: dict[str, str] = field(hash=False)
    timestamp: float  # when the call arrived, on the emulator's clock
    result: str  # RESULT_OK or the AWS error code answered
    access_key_id: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Caller:
    """Who signed the request, as its SigV4 credential scope says (never verified)."""

    access_key_id: str
    region: str


@dataclass
class TokenRequest:
    """GetWebIdentityToken parameters as sent; validated separately."""

    audiences: list[str] | None = None
    algorithm: str | None = None
    duration_raw: str | None = None
    tags: list[tuple[str | None, str | None]] | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TokenRequest:
        return cls(
            audiences=_member_list(params, "Audience"),
            algorithm=params.get("SigningAlgorithm"),
            duration_raw=params.get("DurationSeconds"),
            tags=_tag_list(params),
        )

    @property
    def duration(self) -> int | None:
        if self.duration_raw is None:
            return DEFAULT_DURATION
        try:
            return int(self.duration_raw)
        except ValueError:
            return None

    def record(self, caller: Caller | None, timestamp: float, result: str) -> CallRecord:
        return CallRecord(
            audiences=tuple(self.audiences or ()),
            algorithm=self.algorithm or "",
            duration=self.duration,
            tags={k: v or "" for k, v in self.tags or () if k is not None},
            timestamp=timestamp,
            result=result,
            access_key_id=caller.access_key_id if caller else None,
            region=caller.region if caller else None,
        )


def _member_list(params: Mapping[str, str], name: str) -> list[str] | None:
    """Read a query-protocol list ``Name.member.N``; ``Name=`` is the empty list."""
    prefix = f"{name}.member."
    members: dict[int, str] = {}
    for key, value in params.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            members[int(key[len(prefix) :])] = value
    if members:
        return [members[i] for i in sorted(members)]
    return [] if name in params else None


def _tag_list(params: Mapping[str, str]) -> list[tuple[str | None, str | None]] | None:
    """Read ``Tags.member.N.Key`` / ``Tags.member.N.Value`` pairs in order."""
    pattern = re.compile(r"Tags\.member\.(\d+)\.(Key|Value)")
    members: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = pattern.fullmatch(key)
        if match:
            members.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if members:
        return [(members[i].get("Key"), members[i].get("Value")) for i in sorted(members)]
    return [] if "Tags" in params else None


def _is_tag_text(text: str) -> bool:
    """The service model's ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` for every character."""
    return all(unicodedata.category(c)[0] in "LZN" or c in _TAG_PUNCTUATION for c in text)


def _constraint(value: object, member: str, constraint: str) -> str:
    # AWS renders values the Java way: null, 'text', '[a, b]'.
    if value is None:
        shown = "null"
    elif isinstance(value, list):
        shown = "'[" + ", ".join(str(v) for v in value) + "]'"
    else:
        shown = f"'{value}'"
    return f"Value {shown} at '{member}' failed to satisfy constraint: Member must {constraint}"


def _validate_audiences(request: TokenRequest) -> None:
    audiences = request.audiences
    if audiences is None:
        request.problems.append(_constraint(None, "audience", "not be null"))
        return
    if not audiences:
        request.problems.append(
            _constraint(audiences, "audience", "have length greater than or equal to 1")
        )
    elif len(audiences) > MAX_AUDIENCES:
        request.problems.append(
            _constraint(audiences, "audience", f"have length less than or equal to {MAX_AUDIENCES}")
        )
    for audience in audiences:
        if not 1 <= len(audience) <= 1000:
            request.problems.append(
                _constraint(audience, "audience.member", "have length between 1 and 1000")
            )


def _validate_algorithm(request: TokenRequest) -> None:
    if request.algorithm is None:
        request.problems.append(_constraint(None, "signingAlgorithm", "not be null"))
    elif request.algorithm not in SIGNING_ALGORITHMS:
        request.problems.append(
            _constraint(
                request.algorithm,
                "signingAlgorithm",
                "satisfy enum value set: [" + ", ".join(SIGNING_ALGORITHMS) + "]",
            )
        )


def _validate_duration(request: TokenRequest) -> None:
    duration = request.duration
    if duration is None:
        request.problems.append(_constraint(request.duration_raw, "durationSeconds", "be a number"))
    elif duration < MIN_DURATION:
        request.problems.append(
            _constraint(
                duration, "durationSeconds", f"have value greater than or equal to {MIN_DURATION}"
            )
        )
    elif duration > MAX_DURATION:
        request.problems.append(
            _constraint(
                duration, "durationSeconds", f"have value less than or equal to {MAX_DURATION}"
            )
        )


def _validate_tags(request: TokenRequest) -> None:
    tags = request.tags or []
    if len(tags) > MAX_TAGS:
        request.problems.append(
            _constraint(len(tags), "tags", f"have length less than or equal to {MAX_TAGS}")
        )
    seen: set[str] = set()
    for key, value in tags:
        if key is None or value is None:
            request.problems.append(_constraint(None, "tags.member.key/value", "not be null"))
            continue
        if not 1 <= len(key) <= 128 or not _is_tag_text(key):
            request.problems.append(
                _constraint(key, "tags.member.key", "have length between 1 and 128 and match tag")
            )
        if len(value) > 256 or not _is_tag_text(value):
            request.problems.append(
                _constraint(value, "tags.member.value", "have length at most 256 and match tag")
            )
        if key.lower() in seen:
            request.problems.append(_constraint(key, "tags.member.key", "be unique"))
        seen.add(key.lower())


def validate(request: TokenRequest) -> list[str]:
    """Every broken constraint of ``request``, in the order AWS lists them; [] if none."""
    _validate_audiences(request)
    _validate_algorithm(request)
    _validate_duration(request)
    _validate_tags(request)
    return request.problems
