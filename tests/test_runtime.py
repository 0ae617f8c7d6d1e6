"""The runtime manager owns what a config starts: a reload keeps what did not change,
stops what no route uses any more, and builds off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from authgw.metrics import Metrics
from authgw.runtime import Options, RuntimeManager
from authgw.sources.remote import RemoteSecret
from tests import configs
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

    async def scenario() -> tuple[list[RemoteSecret], list[threading.Thread]]:
        routes = [cmd_route(f"r{i}", f"echo {SECRET}") for i in range(5)]
        m.load(Options(str(config(tmp_path, *routes))))
        secrets = [secret_of(m, f"r{i}") for i in range(5)]
        for secret in secrets:
            assert secret.wait(10)
        timers = [s._timer for s in secrets if s._timer is not None]
        m.shutdown()
        return secrets, timers

    secrets, timers = asyncio.run(scenario())
    assert all(s._closed and s._timer is None for s in secrets)
    assert m.secrets.count() == 0 and m.current is None
    # Cancelled, each ends without reading again (one armed just before may start after
    # the cancel, and ends at once).
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in timers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert timers and not [t for t in timers if t.is_alive()]


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


def test_a_cancelled_build_spares_the_secrets_of_the_build_after_it(tmp_path: Path) -> None:
    """The watcher's reload is cancelled (an option changed) while its command secret is
    read; the next reload reads the same secret. When the cancelled build ends, what it
    stops is only what neither the running config nor the next build uses."""
    gate = tmp_path / "gate"
    slow = f"while [ ! -e {gate} ]; do sleep 0.01; done; echo {SECRET}"
    m = manager()

    async def scenario() -> RemoteSecret:
        path = config(tmp_path, cmd_route("a", f"echo {SECRET}"))
        m.load(Options(str(path)))
        config(tmp_path, cmd_route("b", slow))
        first = asyncio.ensure_future(m.reload("the watcher"))
        while m.secrets.count() < 2:  # b's first read has started
            await asyncio.sleep(0.01)
        first.cancel()
        config(tmp_path, cmd_route("b", slow), cmd_route("c", f"echo {SECRET}"))
        second = asyncio.ensure_future(m.reload("options changed"))
        await asyncio.sleep(0.05)
        gate.touch()
        assert await second
        with pytest.raises(asyncio.CancelledError):
            await first
        await m.idle()
        b = secret_of(m, "b")
        assert not b._closed and b.read() == SECRET.encode() and m.secrets.count() == 2
        m.shutdown()
        return b

    asyncio.run(scenario())


def test_a_build_handed_over_to_a_cancelled_reload_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread delivered the build; the reload is cancelled before it resumes: the
    build's flow log is closed and its secrets stopped, not leaked."""
    monkeypatch.setenv("RT_SECRET", SECRET)
    m = manager()

    async def scenario() -> None:
        m.load(Options(str(config(tmp_path, env_route("a")))))
        cfg = configs.parse(cmd_route_config(tmp_path))
        built = m._build(cfg, Options(str(tmp_path / "gateway.yaml"), flowlog=str(tmp_path / "f")))
        handed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        m._build_in_thread = lambda cfg, options: handed  # type: ignore[method-assign]
        task = asyncio.ensure_future(m._build_off_loop(cfg, Options()))
        await asyncio.sleep(0)  # the reload waits for the build
        handed.set_result(built)
        task.cancel()  # before it resumes
        with pytest.raises(asyncio.CancelledError):
            await task
        assert built.flowlog is not None and built.flowlog._closed
        assert m.secrets.count() == 0  # the build's command secret is stopped
        m.shutdown()

    asyncio.run(scenario())


def cmd_route_config(tmp_path: Path) -> str:
    return "version: 1\nroutes:\n" + cmd_route("x", f"echo {SECRET}")


def test_a_changed_cache_section_rebuilds_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources take cache.default_ttl: kept only while the cache section is the same."""
    monkeypatch.setenv("RT_SECRET", SECRET)
    m = manager()

    async def scenario() -> None:
        path = config(tmp_path, env_route("a"))
        m.load(Options(str(path)))
        assert m.current is not None
        before = m.current.sources["a"]
        path.write_text("cache: {default_ttl: 60}\n" + path.read_text())
        assert await m.reload("test")
        assert m.current.sources["a"] is not before
        m.shutdown()

    asyncio.run(scenario())


def test_once_mitmproxy_runs_a_first_config_is_built_off_the_loop(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    m = manager()
    m.started = True

    async def scenario() -> None:
        path = config(
            tmp_path, cmd_route("a", f"while [ ! -e {gate} ]; do sleep 0.01; done; echo x")
        )
        m.load(Options(str(path)))
        assert m.current is None  # validated; being built
        gate.touch()
        await m.idle()
        assert m.current is not None and secret_of(m, "a").read() == b"x"
        m.shutdown()

    asyncio.run(scenario())
