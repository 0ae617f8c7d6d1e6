"""The runtime manager owns what a config starts: a reload keeps what did not change,
stops what no route uses any more, and builds off the event loop."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from authgw.metrics import Metrics
from authgw.runtime import Options, RuntimeManager
from authgw.sources.remote import RemoteSecret
from tests.fakes import FakeClock

SECRET = "runtime-secret-" + uuid.uuid4().hex


def config(tmp_path: Path, *routes: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\nroutes:\n" + "".join(routes))
    return path


def cmd_route(name: str, command: str) -> str:
    return (
        f"  - name: {name}\n    hosts: [{name}.example]\n"
        f"    token: {{type: hmac, secret: {{cmd: '{command}', refresh: 1, timeout: 5}}}}\n"
    )


def env_route(name: str) -> str:
    return (
        f"  - name: {name}\n    hosts: [{name}.example]\n"
        "    token: {type: hmac, secret: {env: RT_SECRET}}\n"
    )


def manager() -> RuntimeManager:
    return RuntimeManager(Metrics(), clock=FakeClock(1_800_000_000))


def secret_of(m: RuntimeManager, route: str) -> RemoteSecret:
    assert m.current is not None
    secret = m.current.sources[route].secret
    assert isinstance(secret, RemoteSecret)
    return secret


def test_a_reload_keeps_unchanged_routes_and_stops_dropped_ones_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_SECRET", SECRET)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    m = manager()

    async def scenario() -> None:
        path = config(tmp_path, cmd_route("a", f"cat {secret_file}"), env_route("b"))
        m.load(Options(str(path)))
        assert m.current is not None
        a, b = m.current.sources["a"], m.current.sources["b"]
        dropped = secret_of(m, "a")
        config(tmp_path, env_route("b"), env_route("c"))
        assert await m.reload("test")
        assert m.current.sources["b"] is b  # kept: same object, same generation
        assert "a" not in m.current.sources and a.generation != m.current.sources["c"].generation
        assert dropped._closed and dropped._timer is None and m.secrets.count() == 0
        m.shutdown()

    asyncio.run(scenario())


def test_a_reload_is_built_off_the_event_loop_and_the_running_config_serves_meanwhile(
    tmp_path: Path,
) -> None:
    """A new command secret takes its time to read: the loop goes on, the old runtime
    serves, and the new one is swapped in once its secret is there."""
    gate = tmp_path / "gate"
    m = manager()

    async def scenario() -> None:
        path = config(tmp_path, cmd_route("a", f"echo {SECRET}"))
        m.load(Options(str(path)))
        old = m.current
        # The new route's command waits for a file that the event loop creates.
        config(tmp_path, cmd_route("b", f"while [ ! -e {gate} ]; do sleep 0.01; done; echo x"))
        m.load(Options(str(path)))
        assert m.current is old  # validated; the build runs in a worker thread
        await asyncio.sleep(0)
        gate.touch()  # the loop runs while the new config is built
        await m.idle()
        assert m.current is not old and m.current is not None
        assert secret_of(m, "b").read() == b"x"
        m.shutdown()

    asyncio.run(scenario())


def test_shutdown_stops_every_secret_reader(tmp_path: Path) -> None:
    m = manager()

    async def scenario() -> list[RemoteSecret]:
        routes = [cmd_route(f"r{i}", f"echo {SECRET}") for i in range(5)]
        m.load(Options(str(config(tmp_path, *routes))))
        secrets = [secret_of(m, f"r{i}") for i in range(5)]
        m.shutdown()
        return secrets

    secrets = asyncio.run(scenario())
    assert all(s._closed and s._timer is None for s in secrets)
    assert m.secrets.count() == 0 and m.current is None
    for thread in threading.enumerate():
        if thread.name == "authgw-secret-read":
            thread.join(10)  # a read under way ends; none starts again
    assert not [t for t in threading.enumerate() if t.name.startswith("authgw-secret")]


def test_a_reload_after_a_failed_option_change_builds_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """authgw_config set to a file whose build fails: the old config serves; once that
    file is fixed, a reload builds it (not the old file the running config came from)."""
    monkeypatch.setenv("RT_SECRET", SECRET)
    m = manager()
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()

    async def scenario() -> None:
        m.load(Options(str(config(old_dir, env_route("a")))))
        new = config(new_dir, env_route("b")).read_text().replace("RT_SECRET", "RT_UNSET")
        (new_dir / "gateway.yaml").write_text(new)
        m.load(Options(str(new_dir / "gateway.yaml")))
        await m.idle()  # the build failed: RT_UNSET is not set
        assert m.current is not None and [r.name for r in m.current.config.routes] == ["a"]
        config(new_dir, env_route("b"))
        assert await m.reload("fixed")
        assert [r.name for r in m.current.config.routes] == ["b"]
        m.shutdown()

    asyncio.run(scenario())
