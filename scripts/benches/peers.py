"""peers: mitmdump's CPU per request with the gateway beside what a user would run instead.

Every variant is a mitmdump in reverse mode to one loopback upstream, driven in turns
(so that drift hits all alike) by wrk with 8 keep-alive connections when wrk is
installed, else by one keep-alive connection from this process. With two or more
cores, each mitmdump runs on core 0 and this process (the upstream, wrk) on the others,
so that the load's own CPU does not take turns with the proxy it measures:

- plain mitmdump, and ``--modify-headers`` with a static token;
- a script whose hooks return at once (``peers/noop.py``): what any script costs;
- the 20-line addon a user writes instead (``peers/hs256_cached.py``: an HS256 JWT per
  host kept in a dict), and the same signing on every request (``peers/hs256_fresh.py``);
- the gateway with one hmac route (a cached token), and the same with
  ``scrub_responses: false`` (what scrubbing a response without the token costs);
- a 20-line addon calling botocore's ``SigV4Auth`` per request
  (``peers/sigv4_botocore.py``), and the gateway with one sigv4 route.

CPU time on a shared 2-core machine moves by 10-20% between turns, more than the
differences measured here; so when valgrind is installed the section also counts the
instructions each mitmdump executes per request under callgrind (deterministic to
about 0.3%): each variant serves ``--callgrind-requests`` requests on one keep-alive
connection with instrumentation on (after a warm-up with it off), two variants at a
time.

Ratios are to plain mitmdump; the targets (issue "one room per token type") are the
gateway's hmac route at most x1.03 of plain and no more than the cached 20-line addon,
and its sigv4 route below the botocore addon.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benches.common import (
    SECRET,
    STATIC,
    Row,
    child_env,
    cpu_seconds,
    drive,
    gateway_args,
    gateway_config,
    mitmdump,
    upstream,
)
from benches.sigv4 import AWS as SIGV4_AWS
from launcher import LOOPBACK_ANY_PORT, MITMDUMP, Mitmdump

PEERS = Path(__file__).parent / "peers"
AWS = {**SIGV4_AWS, "BENCH_SECRET": SECRET}  # the sigv4 peers sign with these
_WRK_REQUESTS = re.compile(r"(\d+) requests in")


def _sigv4_config(port: int) -> str:
    return textwrap.dedent(f"""\
        version: 1
        routes:
          - name: aws
            hosts: ["127.0.0.1:{port}"]
            token: {{type: sigv4, service: execute-api, region: eu-west-1}}
        """)


def _load(proc: Mitmdump, seconds: float, requests: int) -> int:
    """Load `proc` for `seconds` (wrk) or `requests` requests; the requests answered."""
    url = f"http://127.0.0.1:{proc.port}/"
    if shutil.which("wrk") is None:
        drive(proc.port, "/", requests)  # origin-form, as to a server (reverse mode)
        return requests
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers through the proxy:\n{out}")
    match = _WRK_REQUESTS.search(out)
    if match is None:
        raise RuntimeError(f"wrk printed no count:\n{out}")
    return int(match.group(1))


def _turns(procs: dict[str, Mitmdump], rounds: int, seconds: float) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in procs}
    for _ in range(rounds):
        for name, proc in procs.items():
            before = cpu_seconds(proc.pid)
            done = _load(proc, seconds, 2000)
            samples[name].append((cpu_seconds(proc.pid) - before) / done)
    return samples


def _pin(procs: dict[str, Mitmdump]) -> set[int]:
    """Each mitmdump on the first core, this process on the rest; the affinity it had."""
    had = os.sched_getaffinity(0)
    if len(had) >= 2:
        first = min(had)
        for proc in procs.values():
            os.sched_setaffinity(proc.pid, {first})
        os.sched_setaffinity(0, had - {first})
    return had


def _instructions(argv: list[str], env: dict[str, str], tmp: str, tag: str, requests: int) -> float:
    """Instructions per request of a mitmdump run under callgrind (see the docstring)."""
    out = f"{tmp}/callgrind.{tag}"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    full = [*valgrind, *MITMDUMP, "--set", "flow_detail=0", *LOOPBACK_ANY_PORT, *argv]
    proc = Mitmdump(full, env=env, cwd=tmp).start(timeout=180)
    url = "/"  # origin-form, as to a server (reverse mode)
    try:
        drive(proc.port, url, 50)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True)
        drive(proc.port, url, requests)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True)
    finally:
        proc.stop(timeout=60)
    total = 0
    for path in glob.glob(out + "*"):
        for line in Path(path).read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total / requests


def _counted(
    variants: dict[str, list[str]], env: dict[str, str], tmp: str, requests: int, runs: int = 1
) -> list[Row]:
    """Instructions per request of each variant: the median of `runs` runs, and their range."""
    counts: dict[str, list[float]] = {name: [] for name in variants}
    with ThreadPoolExecutor(2) as pool:
        for run in range(runs):
            # zero-padded: _instructions globs its output as TAG*, and "1*" matches "10"
            tags = [f"{run}.{i:02d}" for i in range(len(variants))]
            found = pool.map(
                lambda argv, tag: _instructions(argv, env, tmp, tag, requests),
                variants.values(),
                tags,
            )
            for name, count in zip(variants, found, strict=True):
                counts[name].append(count)
    plain = statistics.median(counts["plain mitmdump"])
    rows: list[Row] = []
    for name, values in counts.items():
        count = statistics.median(values)
        spread = f"runs {min(values) / 1e6:.3f}..{max(values) / 1e6:.3f} M; " if runs > 1 else ""
        rows.append(
            (
                f"instructions/request, {name}",
                f"{count / 1e6:.3f} M",
                f"x{count / plain:.3f} of plain ({spread}callgrind, median of {runs} run(s) of "
                f"{requests} requests on one connection)",
            )
        )
    return rows


def bench_peers(
    rounds: int, seconds: float = 3.0, callgrind_requests: int = 1000, callgrind_runs: int = 1
) -> list[Row]:
    with upstream() as port, tempfile.TemporaryDirectory() as tmp:
        config, sigv4 = Path(tmp) / "gateway.yaml", Path(tmp) / "sigv4.yaml"
        config.write_text(gateway_config(port, hmac_only=True))
        unscrubbed = Path(tmp) / "unscrubbed.yaml"
        unscrubbed.write_text(gateway_config(port, hmac_only=True) + "    scrub_responses: false\n")
        sigv4.write_text(_sigv4_config(port))
        reverse = ["--mode", f"reverse:http://127.0.0.1:{port}"]
        variants: dict[str, list[str]] = {
            "plain mitmdump": [],
            "--modify-headers static token": ["--modify-headers", f"/~q/X-Token/{STATIC}"],
            "a script whose hooks return at once": ["-s", str(PEERS / "noop.py")],
            "20-line addon, HS256 cached in a dict": ["-s", str(PEERS / "hs256_cached.py")],
            "20-line addon, HS256 signed per request": ["-s", str(PEERS / "hs256_fresh.py")],
            "gateway, hmac route (cached token)": gateway_args(config),
            "gateway, hmac route, scrub_responses: false": gateway_args(unscrubbed),
            "20-line addon, botocore SigV4Auth": ["-s", str(PEERS / "sigv4_botocore.py")],
            "gateway, sigv4 route": gateway_args(sigv4),
        }
        env = child_env(AWS)
        counted: list[Row] = []
        if shutil.which("valgrind") and callgrind_requests > 0:
            print(
                f"peers: counting instructions under callgrind ({len(variants)} variants, "
                "about a minute each, two at a time)",
                file=sys.stderr,
            )
            counted = _counted(
                {k: [*reverse, *v] for k, v in variants.items()},
                env,
                tmp,
                callgrind_requests,
                callgrind_runs,
            )
        procs = {name: mitmdump([*reverse, *args], env, tmp) for name, args in variants.items()}
        pinned = _pin(procs)
        try:
            for proc in procs.values():
                _load(proc, 1, 200)  # warm up: imports, connections, the cache
            samples = _turns(procs, rounds, seconds)
        finally:
            for proc in procs.values():
                proc.stop()
            os.sched_setaffinity(0, pinned)
    plain = statistics.median(samples["plain mitmdump"])
    rows: list[Row] = list(counted)
    driver = "wrk -c8" if shutil.which("wrk") else "one keep-alive connection"
    for name, values in samples.items():
        cost = statistics.median(values)
        ratios = sorted(v / plain for v in values)
        rows.append(
            (
                f"mitmdump CPU/request, {name}",
                f"{cost * 1e6:.0f} us",
                f"x{cost / plain:.3f} of plain (turns x{ratios[0]:.2f}..x{ratios[-1]:.2f}; "
                f"median of {rounds} turns, {driver})",
            )
        )
    return rows
