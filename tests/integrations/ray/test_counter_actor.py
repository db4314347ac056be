"""The counter actor's body without Ray: a silent replica leaves the lift's backlog."""

from __future__ import annotations

from equinox.integrations.ray.counters import CounterActor
from equinox.scheduling.global_counters import CounterReport


def _run(forget_after_s: float | None) -> CounterActor:
    now = [0.0]
    actor = CounterActor(None, forget_after_s=forget_after_s, clock=lambda: now[0])
    actor.merge(CounterReport("dead", {"counter": {"a": 1.0}}, frozenset({"a"})).as_dict())
    actor.merge(CounterReport("live", {"counter": {"b": 100.0}}, frozenset({"b"})).as_dict())
    assert actor.replicas() == ["dead", "live"]
    now[0] = 2.0  # "dead" (holding a's queue) has not reported for 2 s; tenant c starts waiting on "live"
    actor.merge(CounterReport("live", {}, frozenset({"b", "c"})).as_dict())
    return actor


def test_a_silent_replica_is_forgotten_and_no_longer_holds_the_lift() -> None:
    actor = _run(forget_after_s=1.0)
    assert actor.replicas() == ["live"] and actor.service.backlogged() == {"b", "c"}
    view = actor.view()["counter"]
    assert view["a"] == 1.0  # its charges stay
    assert view["c"] == 100.0  # lifted to the backlogged b: no credit banked while idle
    remembering = _run(forget_after_s=None).view()["counter"]
    assert remembering["c"] == 1.0  # the dead replica's stale queue held the floor down
