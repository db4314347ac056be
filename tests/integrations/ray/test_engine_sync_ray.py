"""The engine-side counter sync on a local Ray instance: it creates the counter actor when absent,
and when the actor is killed the engine logs a warning, keeps ordering, and reconnects."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from equinox.integrations.ray.engine_sync import EngineCounterSync, start_engine_sync  # noqa: E402
from equinox.integrations.vllm.settings import GlobalCounterSettings  # noqa: E402
from equinox.request import Request, RequestSpec  # noqa: E402
from equinox.scheduling.interface import PolicyConfig  # noqa: E402
from equinox.scheduling.policy import make_policy  # noqa: E402

pytestmark = pytest.mark.slow

NAME, NAMESPACE = "engine-sync-test", "equinox-test"


def _tick_until(sync: EngineCounterSync, done: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"gave up: {sync.num_syncs} syncs, {sync.num_failures} failures"
        sync.tick(time.monotonic())
        time.sleep(0.02)


def test_the_sync_creates_the_actor_and_survives_its_death(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    policy = make_policy("vtc", PolicyConfig())
    policy.add_request(Request(RequestSpec("h1", "heavy", 0.0, 100, 10)), 0.0)
    policy.pop(policy.peek(0.0), 0.0)
    settings = GlobalCounterSettings(sync_interval_s=0.1, actor=NAME, namespace=NAMESPACE, replica="engine-1",
                                     timeout_s=10.0, snapshot=str(tmp_path / "counters.json"))
    sync, connector = start_engine_sync(policy, settings, retry_s=0.5)
    try:
        _tick_until(sync, lambda: sync.num_syncs >= 1)
        actor = ray.get_actor(NAME, namespace=NAMESPACE)  # created by the engine, detached
        assert ray.get(actor.view.remote(), timeout=30)["counter"]["heavy"] == 100.0

        with caplog.at_level(logging.WARNING, logger="equinox.integrations.ray.engine_sync"):
            ray.kill(actor, no_restart=True)
            _tick_until(sync, lambda: sync.num_failures >= 1)
        assert any("ordering by this engine's counters" in r.getMessage() for r in caplog.records)
        # Still ordering, as plain local VTC (its own counter lift included) would from the same requests:
        # the only engine's merged view was its own counters.
        local = make_policy("vtc", PolicyConfig())
        local.add_request(Request(RequestSpec("h1", "heavy", 0.0, 100, 10)), 0.0)
        local.pop(local.peek(0.0), 0.0)
        for p in (policy, local):
            p.add_request(Request(RequestSpec("h2", "heavy", 1.0, 10, 10)), 1.0)
            p.add_request(Request(RequestSpec("l1", "light", 1.0, 10, 10)), 1.0)
        assert [r.request_id for r in policy.waiting()] == [r.request_id for r in local.waiting()]
        assert policy.counter_breakdown() == local.counter_breakdown()
        assert policy.counter_breakdown()["vtc"]["heavy"] == 100.0

        synced = sync.num_syncs
        _tick_until(sync, lambda: sync.num_syncs > synced)  # reconnected: a new actor, from the snapshot
        actor = ray.get_actor(NAME, namespace=NAMESPACE)
        assert ray.get(actor.view.remote(), timeout=30)["counter"]["heavy"] == 100.0
    finally:
        connector.close()
        try:
            ray.kill(ray.get_actor(NAME, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
        ray.shutdown()
