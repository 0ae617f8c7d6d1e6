"""Untrusted text and times made readable in a verdict's detail and in the CLI's output."""

from __future__ import annotations

from datetime import UTC, datetime


def printable(text: str, limit: int = 80) -> str:
    """An untrusted string made safe to print on one line: escaped and cut."""
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def utc_time(ts: float) -> str:
    """``2026-11-22 05:00:00 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``5 h``, ``12 days``: the coarse unit a person reads at a glance."""
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} days"
