"""The global-counter protocol without a host: reports, merges, lift once per cluster, snapshots."""

from __future__ import annotations

import pytest

from equinox.errors import ConfigError
from equinox.request import Request, RequestSpec
from equinox.scheduling.global_counters import CounterClient, CounterReport, CounterService
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policy import make_policy
from equinox.scheduling.state import read_snapshot, write_snapshot


def req(rid: str, tenant: str, prompt: int = 100) -> Request:
    return Request(RequestSpec(rid, tenant, 0.0, prompt, 10))


def admit(policy, rid: str, tenant: str, prompt: int = 100) -> None:  # type: ignore[no-untyped-def]
    r = req(rid, tenant, prompt)
    policy.add_request(r, 0.0)
    assert policy.peek(0.0) is r
    policy.pop(r, 0.0)


@pytest.mark.parametrize("name", ["vtc", "equinox"])
def test_replicas_order_by_cluster_wide_service(name: str) -> None:
    service = CounterService()
    a, b = make_policy(name, PolicyConfig()), make_policy(name, PolicyConfig())
    ca, cb = CounterClient("a", a), CounterClient("b", b)
    admit(a, "a1", "heavy", 1000)  # heavy is served on replica a only
    for client in (ca, cb):
        client.sync(service)
    # Replica b has seen nothing of heavy locally, yet now serves light first.
    b.add_request(req("h2", "heavy"), 1.0)
    b.add_request(req("l1", "light"), 1.0)
    assert b.peek(1.0).tenant == "light"  # type: ignore[union-attr]
    assert b.shared_counters()["counter"]["heavy"] == pytest.approx(a.shared_counters()["counter"]["heavy"])


def test_charges_between_report_and_view_stay_local() -> None:
    service = CounterService()
    policy = make_policy("vtc", PolicyConfig())
    client = CounterClient("r", policy)
    admit(policy, "x1", "t", 100)
    report = client.report()
    admit(policy, "x2", "t", 50)  # made while the report travels
    client.apply(service.merge(report))
    assert policy.shared_counters()["counter"]["t"] == 150
    assert client.report().deltas == {"counter": {"t": 50}}


def test_lift_applies_once_for_the_cluster() -> None:
    service = CounterService()
    service.merge(CounterReport("a", {"counter": {"old": 500.0}}, frozenset({"old"})))
    # newcomer becomes backlogged on two replicas at once: lifted to the floor once, not twice
    service.merge(CounterReport("a", {"counter": {"new": 10.0}}, frozenset({"old", "new"})))
    service.merge(CounterReport("b", {"counter": {"new": 10.0}}, frozenset({"new"})))
    assert service.view()["counter"]["new"] == 510.0


def test_snapshot_round_trip_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = CounterService()
    service.merge(CounterReport("a", {"counter": {"t": 3.0}, "rfc": {"t": 0.5}}, frozenset({"t"})))
    path = tmp_path / "counters.json"
    write_snapshot(path, service.snapshot(12.0))
    restored = CounterService.from_snapshot(read_snapshot(path))
    assert restored.view() == service.view()
    assert restored.num_merges == 1
    with pytest.raises(ConfigError, match="global-counters"):
        CounterService.from_snapshot({**service.snapshot(1.0), "policy": "vtc"})
    with pytest.raises(ConfigError, match="counter"):
        bad = service.snapshot(1.0)
        bad["state"]["counters"]["counter"]["t"] = "x"
        CounterService.from_snapshot(bad)


def test_policies_without_counters_are_refused() -> None:
    with pytest.raises(ConfigError, match="keeps no fairness counters"):
        CounterClient("r", make_policy("fcfs", PolicyConfig()))
