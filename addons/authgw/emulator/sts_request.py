"""One ``GetWebIdentityToken`` request: its parameters, their validation, its record.

Parameters are read from a query-protocol form (``Audience.member.N``,
``Tags.member.N.Key``) as sent; parameters the action does not know are ignored.
``validate`` then lists every constraint of the service model they break, worded the
way AWS words it; ``rule_violation`` checks the rules the model cannot say (Scope
only with ``SubjectMode=OriginIdentity`` and one audience, the origin subject).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from authgw.aws import STS_SIGNING_ALGORITHMS

SIGNING_ALGORITHMS = STS_SIGNING_ALGORITHMS  # what the gateway asks for, and AWS accepts
SUBJECT_MODES = ("AWSIdentity", "OriginIdentity")
ORIGIN_IDENTITY = "OriginIdentity"
DEFAULT_DURATION = 300
MIN_DURATION = 60
MAX_DURATION = 3600
MAX_AUDIENCES = 10
MAX_TAGS = 50
RESULT_OK = "OK"

_TAG_PUNCTUATION = frozenset("_.:/=+-@")
# The service model's pattern for Scope: RFC 6749 scope tokens, one space between them.
SCOPE_PATTERN = r"[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+( [\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+)*"
MAX_SCOPE = 256
# Control, format and separator characters: what AWS refuses in an origin subject.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


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
    scope: str | None = None  # as sent; None when not sent
    subject_mode: str | None = None  # as sent; None when not sent (AWSIdentity)


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
    scope: str | None = None
    subject_mode: str | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TokenRequest:
        return cls(
            audiences=_member_list(params, "Audience"),
            algorithm=params.get("SigningAlgorithm"),
            duration_raw=params.get("DurationSeconds"),
            tags=_tag_list(params),
            scope=params.get("Scope"),
            subject_mode=params.get("SubjectMode"),
        )

    @property
    def origin_identity(self) -> bool:
        """Whether ``sub`` is to be the origin subject rather than the caller's ARN."""
        return self.subject_mode == ORIGIN_IDENTITY

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
            scope=self.scope,
            subject_mode=self.subject_mode,
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


def _validate_scope(request: TokenRequest) -> None:
    scope = request.scope
    if scope is None:
        return
    if not 1 <= len(scope) <= MAX_SCOPE:
        request.problems.append(
            _constraint(scope, "scope", f"have length between 1 and {MAX_SCOPE}")
        )
    elif not re.fullmatch(SCOPE_PATTERN, scope):
        request.problems.append(
            _constraint(scope, "scope", f"satisfy regular expression pattern: {SCOPE_PATTERN}")
        )


def _validate_subject_mode(request: TokenRequest) -> None:
    if request.subject_mode is not None and request.subject_mode not in SUBJECT_MODES:
        request.problems.append(
            _constraint(
                request.subject_mode,
                "subjectMode",
                "satisfy enum value set: [" + ", ".join(SUBJECT_MODES) + "]",
            )
        )


def validate(request: TokenRequest) -> list[str]:
    """Every broken constraint of ``request``, in the order AWS lists them; [] if none."""
    _validate_audiences(request)
    _validate_algorithm(request)
    _validate_duration(request)
    _validate_tags(request)
    _validate_scope(request)
    _validate_subject_mode(request)
    return request.problems


def rule_violation(request: TokenRequest, origin_subject: str | None) -> tuple[str, str] | None:
    """The (AWS error code, message) for a rule a model-valid ``request`` breaks, if any.

    ``origin_subject`` is ``aws:OriginIdentity/Subject`` of the calling session (None:
    the session has no trusted identity propagation context).
    """
    if request.scope is not None:
        values = request.scope.split(" ")
        if len(set(values)) != len(values):
            return "ValidationError", "Scope must not repeat a scope value."
        if not request.origin_identity or len(request.audiences or ()) != 1:
            return (
                "ValidationError",
                "Scope can be specified only when SubjectMode is OriginIdentity "
                "and exactly one audience is requested.",
            )
    if request.origin_identity:
        return _origin_subject_violation(origin_subject)
    return None


def _origin_subject_violation(subject: str | None) -> tuple[str, str] | None:
    if subject is None or not subject.strip():
        return (
            "ValidationError",
            "SubjectMode OriginIdentity requires aws:OriginIdentity/Subject in the trusted "
            "identity propagation context of the calling session.",
        )
    # AWS denies a subject that looks like an ARN, is padded, or hides characters.
    hidden = any(unicodedata.category(c) in _HIDDEN_CATEGORIES and c != " " for c in subject)
    if subject[:4].lower() == "arn:" or subject != subject.strip(" ") or hidden:
        return (
            "AccessDenied",
            "The origin subject of the calling session cannot be used as the sub claim.",
        )
    return None
