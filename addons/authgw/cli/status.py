"""``authgw status``: a running gateway's routes, cached tokens and last errors."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from authgw import config as configmod
from authgw.cli.table import print_table
from authgw.config import ConfigError
from authgw.verify import human_duration

DEFAULT_METRICS = "127.0.0.1:9464"


def _status_url(args: argparse.Namespace) -> str:
    """--url, else the config's `metrics` address, else 127.0.0.1:9464."""
    if args.url:
        url: str = args.url
        return url if url.rstrip("/").endswith("/status") else url.rstrip("/") + "/status"
    address = DEFAULT_METRICS
    if Path(args.config).exists():
        metrics = configmod.load(args.config).metrics
        if metrics is not None:
            host = f"[{metrics[0]}]" if ":" in metrics[0] else metrics[0]
            address = f"{host}:{metrics[1]}"
    return f"http://{address}/status"


def cmd_status(args: argparse.Namespace) -> int:
    try:
        url = _status_url(args)
    except ConfigError as e:
        print(f"authgw: {args.config}: {e}", file=sys.stderr)
        return 2
    # No proxy: the gateway's own status port is never behind the gateway.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=args.timeout) as response:
            doc = json.loads(response.read())
    except (OSError, ValueError) as e:
        print(f"authgw: cannot read {url}: {e}", file=sys.stderr)
        if isinstance(e, OSError):
            print(
                "authgw: is the gateway running, with `metrics: HOST:PORT` in its config "
                "(or --set authgw_metrics=HOST:PORT)? Its status is served there",
                file=sys.stderr,
            )
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"authgw status from {url} at {doc.get('now')}")
    rows = [("ROUTE", "SOURCE", "SECRET", "TOKEN EXPIRY", "LAST ERROR")]
    for route in doc.get("routes", []):
        source = route.get("source") or "-"
        if "verify" in route:
            source += f" +verify ({route['verify'].get('mode')})"
        secret = (
            route.get("secret_fingerprint")
            or route.get("verify", {}).get("secret_fingerprint")
            or "-"
        )
        expiry = "-"
        if route.get("token_expires_at"):
            expiry = f"{route['token_expires_at']} ({route.get('flag') or 'ok'})"
        error = route.get("last_error") or {}
        rows.append((route["name"], source, secret, expiry, error.get("error_class", "-")))
    print_table(rows)
    cache = doc.get("cache", {})
    print(f"\ncached tokens: {cache.get('entries', 0)} of at most {cache.get('max_entries')}")
    tokens = doc.get("tokens", [])
    if tokens:
        rows = [("ROUTE", "AUDIENCE", "KID", "EXPIRES", "LEFT")]
        for t in tokens:
            left = t.get("seconds_left")
            rows.append(
                (
                    t["route"],
                    ",".join(t.get("audience") or []) or "-",
                    t.get("kid") or "-",
                    t.get("expires_at") or "never",
                    "-" if left is None else human_duration(left),
                )
            )
        print_table(rows)
    for failure in doc.get("backoff", []):
        print(
            f"backing off: {failure['route']} {','.join(failure['audience'])}: "
            f"{failure['error_class']}, next try in {failure['retry_in']} s"
        )
    return 0
