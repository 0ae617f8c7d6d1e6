"""authgw benchmarks: prints one table. Everything runs on loopback and stops by itself.

    python scripts/bench.py                 # every section
    python scripts/bench.py --only hook,cpu # some of them

Sections:
  hook  the addon's `request` hook on a cached token, per source: microseconds per call
  scrub the response hooks on a routed flow, scrub_responses on beside off: bodies of
        2 B, 4 KB JSON (plain and gzip) and 1 MB without the credential, and 4 KB echoing it
  leaks the leak check per request with 1, 100 and 1,000 secrets held, bodies of 1 KiB
        and 1 MiB that hold none of them: leak_check block beside off
  cpu   mitmdump's CPU time per request: plain, with --modify-headers, with the
        gateway (cached token), measured in turns, with ratios to plain
  peers mitmdump's CPU per request in reverse mode under wrk (8 connections), side by
        side: plain, --modify-headers, the 20-line HS256 addon (cached and per request),
        the gateway's hmac route; botocore's SigV4Auth addon and the gateway's sigv4 route
  refresh  STS calls per 10,000 requests over 5 audiences, and the slowest request
        while tokens refresh under steady load with 1 s of STS latency: refresh-ahead
        (authgw) beside refresh on the request path (refresh_ahead: 0), side by side.
        Real boto3 calls to the STS emulator; token time runs 600x faster than the
        wall clock (one clock shared by emulator and cache), so an hour-long token
        lives 6 s and several refreshes fit in a short run.
  cold  200 concurrent requests for a new audience through mitmdump: STS calls
  hosts 100,000 distinct hosts through a `*` route with `audience: dynamic` and
        `max_entries: 1000` (mitmdump in upstream mode towards a local stand-in
        proxy, so no name is ever resolved): peak cache entries, RSS growth
  users 10,000 distinct users through one route whose claims take
        `${header:X-Debug-User}`, with `max_entries: 100`: peak cache entries, RSS growth
  sigv4 signing a request: in process for 1 KB and 1 MB bodies, and mitmdump's CPU per
        PUT of those bodies without the gateway and with a sigv4 route
  start mitmdump start-up, to the first answered request: no addon, the gateway
        without an STS route, and with one (boto3 is imported only then)
  soak  keep-alive clients through mitmdump for minutes on short-lived tokens, half on
        an sts route (the STS emulator), half on an hmac one whose command secret
        rotates, while the config reloads every 30 s, STS fails for a phase and the
        flow log is rotated: errors, source calls per token life, and mitmdump's RSS,
        threads, fds and asyncio tasks sampled every few minutes
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

# Run as `python scripts/bench.py`: scripts/ is on sys.path (not the repository root), so
# the sections are `benches.*` and they import `launcher` alike.
from benches.cold import bench_cold
from benches.common import Row
from benches.cpu import bench_cpu
from benches.hook import bench_hook
from benches.hosts import bench_hosts
from benches.leaks import bench_leaks
from benches.peers import bench_peers
from benches.refresh import bench_refresh
from benches.scrub import bench_scrub
from benches.sigv4 import bench_sigv4
from benches.soak import bench_soak
from benches.start import bench_start
from benches.users import bench_users

SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "hook": lambda a: bench_hook(a.calls, a.rounds),
    "cpu": lambda a: bench_cpu(a.requests, a.rounds),
    "scrub": lambda a: bench_scrub(a.calls, a.rounds),
    "leaks": lambda a: bench_leaks(a.rounds),
    "peers": lambda a: bench_peers(
        a.rounds, callgrind_requests=a.callgrind_requests, callgrind_runs=a.callgrind_runs
    ),
    "refresh": lambda a: bench_refresh(10_000, a.refresh_seconds),
    "cold": lambda a: bench_cold(200),
    "hosts": lambda a: bench_hosts(a.hosts, 1000),
    "users": lambda a: bench_users(a.users, 100),
    "sigv4": lambda a: bench_sigv4(a.rounds),
    "start": lambda a: bench_start(a.rounds),
    "soak": lambda a: bench_soak(a.soak_clients, a.soak_minutes, a.soak_life),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections ({', '.join(SECTIONS)})",
    )
    parser.add_argument("--calls", type=int, default=20000, help="hook calls per round")
    parser.add_argument("--requests", type=int, default=2000, help="requests per cpu turn")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median reported)")
    parser.add_argument(
        "--callgrind-requests",
        type=int,
        default=1000,
        help="requests per variant counted under callgrind (peers; 0: skip)",
    )
    parser.add_argument(
        "--callgrind-runs",
        type=int,
        default=1,
        help="callgrind runs per variant (peers; the median and the range are shown)",
    )
    parser.add_argument("--hosts", type=int, default=100_000, help="distinct hosts (hosts)")
    parser.add_argument("--users", type=int, default=10_000, help="templated users (users)")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=30.0,
        help="wall seconds the refresh load runs per variant",
    )
    parser.add_argument("--soak-clients", type=int, default=20, help="keep-alive clients (soak)")
    parser.add_argument(
        "--soak-minutes", type=float, default=4.0, help="run time (soak; 60 for the long one)"
    )
    parser.add_argument(
        "--soak-life",
        type=int,
        default=60,
        help="token life in seconds: the sts duration and the hmac lifetime (soak)",
    )
    args = parser.parse_args()
    rows: list[Row] = []
    for name in args.only.split(","):
        rows.extend(SECTIONS[name.strip()](args))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"authgw bench on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        "| "
        + " | ".join(h.ljust(w) for h, w in zip(("what", "result", "how"), widths, strict=True))
        + " |"
    )
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
