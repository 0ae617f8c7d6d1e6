"""``authgw sts-emulator``: a local STS in the foreground, for offline use."""

from __future__ import annotations

import argparse


def cmd_sts_emulator(args: argparse.Namespace) -> int:
    from authgw.emulator import serve

    serve(host=args.host, port=args.port)
    return 0
