"""``authgw emulator`` (alias ``sts-emulator``): a local STS and OAuth2 token endpoint in
the foreground, for offline use.

OAuth2 clients come from ``--oauth2-client ID:SECRET`` (repeatable) and ``--oauth2-clients
FILE`` (a JSON object ``{id: secret}``); with neither, the emulator's demo client. No
error message quotes a secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable


def oauth2_clients(pairs: Iterable[str], path: str | None) -> dict[str, str] | None:
    """``{id: secret}`` from ``ID:SECRET`` pairs and a JSON file; None if neither names one.

    ValueError names the bad pair by position or the file, never a secret.
    """
    clients: dict[str, str] = {}

    def add(client_id: str, secret: str, where: str) -> None:
        if not client_id or not secret:
            raise ValueError(f"{where}: client id and secret must not be empty")
        if client_id in clients:
            raise ValueError(f"{where}: client {client_id!r} is given twice")
        clients[client_id] = secret

    for number, pair in enumerate(pairs, 1):
        client_id, colon, secret = pair.partition(":")
        if not colon:
            raise ValueError(f"--oauth2-client #{number}: expected ID:SECRET")
        add(client_id, secret, f"--oauth2-client #{number}")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except UnicodeDecodeError as e:  # its message would quote a byte of the file
            raise ValueError(f"--oauth2-clients {path}: not UTF-8") from e
        except (OSError, ValueError) as e:  # json's message quotes no input, only a position
            raise ValueError(f"--oauth2-clients {path}: cannot read: {e}") from e
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"--oauth2-clients {path}: expected a JSON object {{id: secret}}")
        for client_id, secret in data.items():
            add(client_id, secret, f"--oauth2-clients {path}")
    return clients if clients or path is not None else None


def cmd_emulator(args: argparse.Namespace) -> int:
    from authgw.emulator import serve

    try:
        clients = oauth2_clients(args.oauth2_client, args.oauth2_clients)
    except ValueError as e:
        print(f"authgw {args.verb}: {e}", file=sys.stderr)
        return 2
    serve(host=args.host, port=args.port, oauth2_clients=clients)
    return 0
