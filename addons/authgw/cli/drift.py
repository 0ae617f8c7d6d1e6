"""``authgw drift``: do secrets from several places agree? Compared by fingerprint."""

from __future__ import annotations

import argparse
import sys

from authgw.cli.table import print_table
from authgw.tokens import fingerprint
from authgw.verify import SecretSource, SecretUnavailable


def cmd_drift(args: argparse.Namespace) -> int:
    if len(args.sources) < 2:
        print("authgw: drift compares two or more sources", file=sys.stderr)
        return 2
    try:
        specs = [SecretSource.parse(text) for text in args.sources]
    except ValueError as e:
        print(f"authgw: {e}", file=sys.stderr)
        return 2
    rows = [("SOURCE", "FINGERPRINT", "BYTES")]
    values: list[bytes] = []
    unreadable = 0
    for spec in specs:
        try:
            value = spec.read(timeout=args.timeout)
        except SecretUnavailable as e:
            unreadable += 1
            rows.append((str(spec), "unreadable", "-"))
            print(f"authgw: cannot read {spec}: {e}", file=sys.stderr)
            continue
        values.append(value)
        rows.append((str(spec), fingerprint(value), str(len(value))))
    print_table(rows)
    distinct = sorted({fingerprint(v) for v in values})
    if unreadable:
        differ = "; the readable ones already differ" if len(distinct) > 1 else ""
        print(f"cannot compare: {unreadable} of {len(specs)} sources unreadable{differ}")
        return 2
    if len(distinct) == 1:
        print(f"all {len(specs)} sources agree ({distinct[0]})")
        return 0
    print(f"DRIFT: {len(distinct)} different secrets among {len(specs)} sources")
    if len({v.strip() for v in values}) == 1:
        print("note: they differ only in leading or trailing whitespace (a newline? a space?)")
    return 1
