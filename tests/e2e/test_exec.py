"""``authgw exec``: a command behind a gateway of its own, holding placeholders only.

The command's environment (proxy, CA bundle, placeholders, no secret variable), its exit
status, a request through the proxy with the placeholder (the upstream gets the key),
and the boundary against a child of the same user: the gateway's and exec's
``/proc/PID/environ`` and ``/proc/PID/mem`` are refused.

The tests run as root, and root reads any process's memory (CAP_SYS_PTRACE). A second
user cannot run this machine's Python (it lives under /root, mode 0700), so `exec` runs
as root with every capability dropped (``setpriv --bounding-set=-all``): the same user,
unprivileged, which is the case the non-dumpable mark is for. A control process started
the same way without the mark is readable, so a refusal is the mark's doing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import fingerprint, leaks
from tests.e2e.upstreams import Upstream

AUTHGW = [sys.executable, "-m", "authgw.cli"]  # the `authgw` command of this Python
SECRET = "sk-exec-real-key-0123456789abcdefghij"
HMAC = "exec-hmac-secret-0123456789abcdefghij0123"
PLACEHOLDER = "ph-exec-0123456789abcdef"
CAPLESS = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("setpriv") is None,
    reason="needs Linux and setpriv (util-linux)",
)


def config(tmp_path: Path, upstream: Upstream) -> Path:
    path = tmp_path / "gateway.yaml"
    routes = [
        {
            "name": "api",
            "hosts": [f"127.0.0.1:{upstream.port}"],
            "placeholder": PLACEHOLDER,
            "placeholder_env": "API_KEY",
            "header": None,
            "token": {"type": "static", "value": {"env": "EXEC_REAL_KEY"}},
        },
        {
            "name": "dash",
            "hosts": ["dash.example"],
            "token": {"type": "hmac", "secret": {"env": "EXEC_HMAC"}},
        },
    ]
    path.write_text(json.dumps({"version": 1, "routes": routes}))
    return path


def run_exec(
    tmp_path: Path, upstream: Upstream, code: str, *, capless: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXEC_REAL_KEY": SECRET, "EXEC_HMAC": HMAC, "NO_PROXY": "*"}
    env["VAULT_TOKEN"] = "what a cmd: source would read"
    argv = [*AUTHGW, "exec", "-c", str(config(tmp_path, upstream)), "--unset", "VAULT_TOKEN"]
    argv += ["--confdir", str(tmp_path / "confdir"), "--", sys.executable, "-c", code]
    return subprocess.run(
        [*CAPLESS, *argv] if capless else argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )


def test_the_command_gets_the_proxy_the_ca_and_placeholders_but_no_secret(
    tmp_path: Path, upstream: Upstream
) -> None:
    code = (
        "import json, os, sys; print(json.dumps(dict(os.environ)));"
        "import urllib.request as u;"
        f"r = u.Request('http://127.0.0.1:{upstream.port}/x',"
        " headers={'X-Key': os.environ['API_KEY']});"
        "u.urlopen(r).read(); sys.exit(7)"
    )
    done = run_exec(tmp_path, upstream, code)
    assert done.returncode == 7, done.stderr[-2000:]  # the command's own status
    env = json.loads(done.stdout.splitlines()[0])
    proxy = env["HTTPS_PROXY"]
    assert proxy.startswith("http://127.0.0.1:") and env["http_proxy"] == proxy
    assert env["API_KEY"] == PLACEHOLDER
    assert "EXEC_REAL_KEY" not in env and "EXEC_HMAC" not in env and "NO_PROXY" not in env
    assert "VAULT_TOKEN" not in env  # --unset
    bundle = Path(env["SSL_CERT_FILE"]).name
    assert bundle == "ca-bundle.pem" and env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"]
    assert env["NODE_EXTRA_CA_CERTS"].endswith("mitmproxy-ca-cert.pem")
    assert not leaks({"stdout": done.stdout, "stderr": done.stderr}, [SECRET, HMAC])
    got = upstream.last.header("X-Key")
    assert fingerprint(got or "") == fingerprint(SECRET)  # the placeholder was swapped


def test_a_child_of_the_same_user_cannot_read_the_gateways_environ_or_memory(
    tmp_path: Path, upstream: Upstream
) -> None:
    code = r"""
import json, os
ppid = os.getppid()
children = open(f"/proc/{ppid}/task/{ppid}/children").read().split()
targets = {"exec": ppid, **{f"gateway {p}": int(p) for p in children if int(p) != os.getpid()}}
seen = {}
for name, pid in targets.items():
    for f in ("environ", "mem"):
        try:
            with open(f"/proc/{pid}/{f}", "rb") as h:
                h.read(1)
            seen[f"{name} {f}"] = "read"
        except OSError as e:
            seen[f"{name} {f}"] = e.errno
print(json.dumps(seen))
"""
    control = subprocess.Popen([*CAPLESS, "sleep", "60"], env={"CONTROL": "1"})
    try:
        probe = f"open('/proc/{control.pid}/environ', 'rb').read()"
        readable = subprocess.run(
            [*CAPLESS, sys.executable, "-c", probe], capture_output=True, timeout=30
        )
        assert readable.returncode == 0, "the capless setup cannot read a dumpable process"
    finally:
        control.kill()
        control.wait()
    done = run_exec(tmp_path, upstream, code, capless=True)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert any(k.startswith("gateway") for k in seen), seen
    assert all(v == 13 for v in seen.values()), seen  # EACCES, every one


def test_exec_as_a_principal_keeps_the_proxy_password_out_of_every_command_line(
    tmp_path: Path, upstream: Upstream
) -> None:
    path = tmp_path / "agent.yaml"
    route = {
        "name": "agent",
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "principals": ["agent_a"],
        "token": {"type": "static", "value": {"env": "EXEC_REAL_KEY"}},
    }
    path.write_text(json.dumps({"version": 1, "routes": [route]}))
    code = (
        "import glob, json, os, urllib.request as u;"
        "proxy = os.environ['HTTP_PROXY'];"
        "lines = [open(p, 'rb').read() for p in glob.glob('/proc/[0-9]*/cmdline')];"
        "secret = proxy.split(':')[2].split('@')[0].encode();"
        f"u.urlopen('http://127.0.0.1:{upstream.port}/who').read();"
        "print(json.dumps({'user': proxy.split('//')[1].split(':')[0],"
        " 'in_cmdlines': sum(secret in line for line in lines)}))"
    )
    env = {**os.environ, "EXEC_REAL_KEY": SECRET}
    done = subprocess.run(
        [*AUTHGW, "exec", "-c", str(path), "--principal", "agent_a"]
        + ["--confdir", str(tmp_path / "confdir"), "--", sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"user": "agent_a", "in_cmdlines": 0}
    sent = (upstream.last.header("Authorization") or "").removeprefix("Bearer ")
    assert fingerprint(sent) == fingerprint(SECRET)  # the principal's route matched


def _started(tmp_path: Path, upstream: Upstream, code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EXEC_REAL_KEY": SECRET, "EXEC_HMAC": HMAC}
    argv = [*AUTHGW, "exec", "-c", str(config(tmp_path, upstream))]
    argv += ["--confdir", str(tmp_path / "confdir"), "--", sys.executable, "-c", code]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


WAIT_FOR_SIGNAL = (
    "import os, signal, sys, time; print(os.getpid(), flush=True);"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42)); time.sleep(60)"
)


def _gateway_of(exec_pid: int, child_pid: int) -> int:
    children = Path(f"/proc/{exec_pid}/task/{exec_pid}/children").read_text().split()
    return next(int(p) for p in children if int(p) != child_pid)


def _gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_sigterm_goes_to_the_command_and_its_status_comes_back(
    tmp_path: Path, upstream: Upstream
) -> None:
    proc = _started(tmp_path, upstream, WAIT_FOR_SIGNAL)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        gateway = _gateway_of(proc.pid, child)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 42  # the command's handler ran; its status is exec's
        assert _gone(gateway)  # and the gateway stopped with it
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_gateway_stops_when_exec_is_killed(tmp_path: Path, upstream: Upstream) -> None:
    proc = _started(tmp_path, upstream, WAIT_FOR_SIGNAL)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        gateway = _gateway_of(proc.pid, child)
        proc.kill()  # SIGKILL: exec runs no cleanup
        proc.wait(10)
        assert _gone(gateway)  # PR_SET_PDEATHSIG
    finally:
        os.kill(child, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()


def test_requests_in_the_command_holds_only_the_placeholder(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Python's requests reads the proxy and CA variables exec sets, and sends the
    placeholder it was given; the upstream gets the key."""
    code = (
        "import os, requests;"
        f"r = requests.get('http://127.0.0.1:{upstream.port}/r',"
        " headers={'X-Key': os.environ['API_KEY']}, timeout=20);"
        "print(r.status_code, os.environ['REQUESTS_CA_BUNDLE'] != '')"
    )
    done = run_exec(tmp_path, upstream, code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["200", "True"]
    assert fingerprint(upstream.last.header("X-Key") or "") == fingerprint(SECRET)
    assert not leaks({"stdout": done.stdout}, [SECRET])
