"""The engine-side counter sync (vLLM plug-in's [global_counters]) without Ray: never blocks, orders by
merged counters once the view arrives, survives a failing or silent actor; its settings."""

from __future__ import annotations

import logging
import subprocess
import sys
from concurrent.futures import Future
from typing import Any

import pytest

from equinox.errors import ConfigError
from equinox.integrations.ray.counters import CounterActor
from equinox.integrations.ray.engine_sync import EngineCounterSync
from equinox.integrations.vllm.settings import load_settings, settings_from_dict
from equinox.request import Request, RequestSpec
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy


class HeldActor:
    """The counter actor's body behind futures the test completes by hand (a slow or dead actor)."""

    def __init__(self) -> None:
        self.actor = CounterActor(None)
        self.held: list[tuple[dict[str, Any], Future[Any]]] = []

    def submit(self, report: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.held.append((report, future))
        return future

    def answer_all(self) -> None:
        held, self.held = self.held, []
        for report, future in held:
            future.set_result(self.actor.merge(report))


def _served(policy: Any, rid: str, tenant: str, prompt: int, now: float) -> None:
    policy.add_request(Request(RequestSpec(rid, tenant, now, prompt, 10)), now)
    policy.pop(policy.peek(now), now)


def test_engine_orders_by_the_merged_view_only_once_it_has_arrived() -> None:
    held = HeldActor()
    a, b = make_policy("vtc", PolicyConfig()), make_policy("vtc", PolicyConfig())
    sync_a = EngineCounterSync(a, "a", 0.5, submit=held.submit)
    sync_b = EngineCounterSync(b, "b", 0.5, submit=held.submit)
    _served(a, "h1", "heavy", 800, 0.0)  # heavy was served on engine a only
    sync_a.tick(0.0)
    sync_b.tick(0.0)
    assert len(held.held) == 2 and sync_b.is_in_flight()
    b.add_request(Request(RequestSpec("h2", "heavy", 0.1, 10, 10)), 0.1)
    b.add_request(Request(RequestSpec("l1", "light", 0.2, 10, 10)), 0.2)
    sync_b.tick(0.3)  # the reply has not come: nothing changes, nothing is sent again
    assert b.peek(0.3).request_id == "h2" and len(held.held) == 2
    held.answer_all()
    sync_b.tick(0.4)  # before Δ: the view is applied, no new report
    assert b.peek(0.4).tenant == "light"  # b now sees heavy's service on a
    assert b.is_lifting is False and a.is_lifting is True  # the actor lifts once b has a view; a has none yet
    assert sync_b.num_syncs == 1 and not sync_b.is_in_flight() and not held.held
    sync_b.tick(0.6)
    assert len(held.held) == 1  # Δ passed: the next report is out


def test_charges_made_while_a_report_travels_are_kept() -> None:
    held = HeldActor()
    a = make_policy("vtc", PolicyConfig())
    sync = EngineCounterSync(a, "a", 0.5, submit=held.submit)
    _served(a, "h1", "heavy", 100, 0.0)
    sync.tick(0.0)
    _served(a, "h2", "heavy", 50, 0.1)  # charged after the report left
    held.answer_all()
    sync.tick(0.2)
    assert a.shared_counters()["counter"]["heavy"] == 150.0
    sync.tick(0.6)
    held.answer_all()
    sync.tick(0.7)
    assert held.actor.view()["counter"]["heavy"] == 150.0  # the late charge went out once, not twice


def test_a_failing_actor_is_a_warning_and_the_engine_keeps_its_counters(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[dict[str, Any]] = []

    def broken(report: dict[str, Any]) -> Future[Any]:
        calls.append(report)
        raise ConnectionError("actor gone")

    a = make_policy("vtc", PolicyConfig())
    sync = EngineCounterSync(a, "a", 0.5, submit=broken)
    disconnects: list[int] = []
    sync.on_disconnect = lambda: disconnects.append(1)
    _served(a, "h1", "heavy", 100, 0.0)
    with caplog.at_level(logging.WARNING, logger="equinox.integrations.ray.engine_sync"):
        for now in (0.0, 0.6, 1.2):
            sync.tick(now)
    assert len(calls) == 3 and sync.num_failures == 3 and len(disconnects) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "actor gone" in warnings[0].getMessage()  # once per outage, not per tick
    assert a.shared_counters()["counter"]["heavy"] == 100.0

    failed: Future[Any] = Future()
    failed.set_exception(RuntimeError("merge raised"))
    sync.submit = lambda report: failed
    sync.tick(1.8)
    sync.tick(1.9)
    assert sync.num_failures == 4 and sync.num_syncs == 0

    held = HeldActor()
    sync.submit = held.submit
    with caplog.at_level(logging.INFO, logger="equinox.integrations.ray.engine_sync"):
        sync.tick(2.4)
        held.answer_all()
        sync.tick(2.5)
    assert sync.num_syncs == 1 and any("restored" in r.getMessage() for r in caplog.records)
    assert a.is_lifting is False
    sync._fail("test outage")
    assert a.is_lifting is True  # local VTC (with its lift) while the actor is away


def test_a_policy_that_never_lifts_keeps_not_lifting() -> None:
    lcf = make_policy("lcf", PolicyConfig())
    EngineCounterSync(lcf, "a", 0.5)._fail("test outage")
    assert lcf.is_lifting is False


def test_an_unanswered_merge_is_given_up_after_the_timeout_and_resent() -> None:
    held = HeldActor()
    a = make_policy("vtc", PolicyConfig())
    sync = EngineCounterSync(a, "a", 0.5, timeout_s=2.0, submit=held.submit)
    sync.tick(0.0)
    for now in (0.5, 1.0, 1.9):
        sync.tick(now)
    assert len(held.held) == 1 and sync.num_failures == 0
    sync.tick(2.5)
    assert sync.num_failures == 1 and len(held.held) == 2  # given up, and a fresh report sent


def test_a_policy_without_counters_is_refused() -> None:
    with pytest.raises(ConfigError, match="keeps no fairness counters"):
        EngineCounterSync(make_policy("fcfs", PolicyConfig()), "a", 0.5)


def test_global_counter_settings_are_off_by_default_and_read_from_file_and_env(tmp_path: Any) -> None:
    assert load_settings({}).global_counters is None
    config = tmp_path / "eq.toml"
    config.write_text('policy = "vtc"\n[global_counters]\nsync_interval_s = 0.25\nactor = "c"\n')
    gc = load_settings({"EQUINOX_VLLM_CONFIG": str(config)}).global_counters
    assert gc is not None and (gc.sync_interval_s, gc.actor, gc.address, gc.namespace) == (0.25, "c", "auto", "equinox")
    gc = load_settings({"EQUINOX_VLLM_SYNC_INTERVAL": "1", "EQUINOX_VLLM_REPLICA": "r1",
                        "EQUINOX_VLLM_RAY_ADDRESS": "10.0.0.1:6379"}).global_counters
    assert gc is not None and (gc.sync_interval_s, gc.replica, gc.address) == (1.0, "r1", "10.0.0.1:6379")


@pytest.mark.parametrize(("table", "needle"), [
    ({"actor": "c"}, "needs sync_interval_s"),
    ({"sync_interval_s": 0}, "sync_interval_s must be a positive number"),
    ({"sync_interval_s": "fast"}, "sync_interval_s must be a positive number"),
    ({"sync_interval_s": 1, "timeout_s": -1}, "timeout_s must be a positive number"),
    ({"sync_interval_s": 1, "address": ""}, "address must not be empty"),
    ({"sync_interval_s": 1, "interval": 1}, "unknown key"),
])
def test_bad_global_counter_settings_say_what_is_wrong(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        settings_from_dict({"global_counters": table}, "eq.toml")
    with pytest.raises(ConfigError, match="EQUINOX_VLLM_SYNC_INTERVAL"):
        load_settings({"EQUINOX_VLLM_SYNC_INTERVAL": "soon"})


def test_the_plug_in_does_not_import_ray_unless_the_sync_is_on() -> None:
    code = ("import sys, equinox.integrations.vllm.scheduler, equinox.integrations.vllm.settings, "
            "equinox.integrations.ray.engine_sync; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_equinox_vllm_serve_refuses_global_counters_without_counters_before_starting(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from equinox.cli.main import main

    config = tmp_path / "eq.toml"
    config.write_text("[global_counters]\nsync_interval_s = 0.5\n")
    assert main(["vllm", "serve", "m", "--policy", "fcfs", "--config", str(config), "--dry-run"]) == 2
    assert "keeps no fairness counters" in capsys.readouterr().err
    assert main(["vllm", "serve", "m", "--policy", "vtc", "--config", str(config), "--dry-run"]) == 0
