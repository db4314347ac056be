"""Global fairness counters across replicas: the protocol every host runs (issue 14).

Fairness per replica is not fairness per tenant: a tenant spread over four replicas gets
four shares. Here every replica's policy orders its queue by the tenant's *cluster-wide*
counters as last merged. Two parts, both free of any host (the simulator's cluster mode
and the Ray counter actor run this same code):

- `CounterService` holds the merged counters. A replica hands it the growth of its
  shared counters since its previous report (`CounterReport`); the service adds every
  replica's growth (charges sum across replicas) and returns the merged view. It also
  applies VTC's counter lift once for the whole cluster: a tenant that becomes backlogged
  somewhere, having been backlogged nowhere, is raised to the smallest counter among the
  tenants that stayed backlogged (else to the floor seen last), so idle time banks no credit
  and a tenant arriving on k replicas at once is lifted once, not k times.
- `CounterClient` sits beside one replica's policy. It turns the policy's own lift off
  (the service lifts), reports growth, and shifts the policy's counters onto the merged
  view. Charges made between a report and the view's arrival (an asynchronous host) stay
  on top and go out with the next report.

Between merges (every Δ seconds) a replica sees its own charges at once and the other
replicas' charges up to Δ late; docs/algorithm.md ("Global fairness across replicas")
bounds what that staleness costs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from equinox.errors import ConfigError
from equinox.scheduling.interface import Policy
from equinox.scheduling.state import FORMAT, VERSION, StateReader, check_snapshot

Counters = dict[str, dict[str, float]]  # counter kind -> tenant -> value
SERVICE_POLICY = "global-counters"  # the `policy` field of the service's snapshots


@dataclass(frozen=True)
class CounterReport:
    """What one replica tells the service: counter growth since its last report, who waits there."""

    replica: str
    deltas: Mapping[str, Mapping[str, float]]
    backlogged: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (for hosts that send it over a wire)."""
        return {"replica": self.replica, "deltas": {k: dict(v) for k, v in self.deltas.items()},
                "backlogged": sorted(self.backlogged)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CounterReport:
        """Inverse of `as_dict`."""
        return cls(str(data["replica"]), {k: dict(v) for k, v in data["deltas"].items()},
                   frozenset(data.get("backlogged", ())))


@dataclass
class CounterService:
    """The merged, cluster-wide counters; replicas report growth, read the merged view."""

    counters: Counters = field(default_factory=dict)
    backlogged_by: dict[str, frozenset[str]] = field(default_factory=dict)  # replica -> tenants waiting there
    floor: dict[str, float] = field(default_factory=dict)  # kind -> lift floor seen last
    num_merges: int = 0

    def merge(self, report: CounterReport) -> Counters:
        """Add one replica's growth, lift tenants newly backlogged anywhere, return the merged view."""
        before = self.backlogged()
        for kind, per in report.deltas.items():
            merged = self.counters.setdefault(kind, {})
            for tenant, amount in per.items():
                if not math.isfinite(amount):
                    raise ConfigError(f"replica {report.replica!r}: counter {kind!r} of {tenant!r} grew by {amount}")
                merged[tenant] = merged.get(tenant, 0.0) + amount
        self.backlogged_by[report.replica] = frozenset(report.backlogged)
        self._lift(before, self.backlogged())
        self.num_merges += 1
        return self.view()

    def forget(self, replica: str) -> None:
        """A replica left the cluster: its queue no longer counts as backlog (its charges stay)."""
        self.backlogged_by.pop(replica, None)

    def backlogged(self) -> frozenset[str]:
        """Tenants waiting on some replica, as last reported."""
        out: frozenset[str] = frozenset()
        for tenants in self.backlogged_by.values():
            out |= tenants
        return out

    def view(self) -> Counters:
        """A copy of the merged counters."""
        return {kind: dict(per) for kind, per in self.counters.items()}

    def _lift(self, before: frozenset[str], now: frozenset[str]) -> None:
        """VTC's lift, once per cluster: newcomers rise to the smallest counter of the tenants that stayed."""
        stayed = before & now
        for kind, per in self.counters.items():
            if stayed:
                self.floor[kind] = min(per.get(t, 0.0) for t in stayed)
            floor = self.floor.get(kind)
            if floor is None:
                continue
            for tenant in sorted(now - before):
                if per.get(tenant, 0.0) < floor:
                    per[tenant] = floor

    # Persistence: the snapshot envelope of scheduling/state.py ------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        """The merged counters in the versioned policy-state envelope (`policy`: global-counters)."""
        return {
            "format": FORMAT, "version": VERSION, "policy": SERVICE_POLICY, "params": {}, "taken_at": float(now),
            "state": {"counters": self.view(), "floor": dict(self.floor), "num_merges": self.num_merges},
        }

    @classmethod
    def from_snapshot(cls, snap: object, *, where: str = "counter snapshot") -> CounterService:
        """A service resumed from `snapshot()` (backlog is not kept: replicas report it again)."""
        checked = check_snapshot(snap, where=where)
        if checked["policy"] != SERVICE_POLICY:
            raise ConfigError(f"{where}: holds the state of policy {checked['policy']!r}, not {SERVICE_POLICY!r}")
        reader = StateReader(SERVICE_POLICY, checked["state"])
        counters = {kind: sub.number_map("values") for kind, sub in _kinds(reader).items()}
        return cls(counters, {}, reader.number_map("floor"), reader.integer("num_merges", 0))


def _kinds(reader: StateReader) -> dict[str, StateReader]:
    """`counters` (kind -> tenant -> value) as readers of a `values` field each."""
    return {kind: StateReader(reader.policy, {"values": per}, path=f"counters.{kind}")
            for kind, per in reader.mapping("counters").items()}


class CounterClient:
    """One replica's side of the protocol, beside its policy."""

    def __init__(self, replica: str, policy: Policy) -> None:
        if not policy.shared_counters() and type(policy).shared_counters is Policy.shared_counters:
            raise ConfigError(f"policy {policy.name!r} keeps no fairness counters; global counters need vtc, "
                              "lcf, vtc-predict or equinox")
        self.replica = replica
        self.policy = policy
        # The service lifts for the whole cluster; a local lift would be summed once per replica.
        policy.is_lifting = False  # type: ignore[attr-defined]
        self._reported: Counters = {}  # counters as of the last view (what the service already has)
        self._pending: Counters | None = None  # counters when the last report left

    def report(self) -> CounterReport:
        """Growth since the last view and the tenants waiting here; call `apply` with the merged view."""
        current = self.policy.shared_counters()
        deltas: dict[str, dict[str, float]] = {}
        for kind, per in current.items():
            seen = self._reported.get(kind, {})
            grown = {t: v - seen.get(t, 0.0) for t, v in per.items() if v != seen.get(t, 0.0)}
            if grown:
                deltas[kind] = grown
        self._pending = current
        backlogged = frozenset(t for per in current.values() for t in per if self.policy.num_waiting_of(t))
        return CounterReport(self.replica, deltas, backlogged)

    def unreported(self) -> Counters:
        """Counter growth the service has not seen yet (since the last view)."""
        out: Counters = {}
        for kind, per in self.policy.shared_counters().items():
            seen = self._reported.get(kind, {})
            out[kind] = {t: v - seen.get(t, 0.0) for t, v in per.items()}
        return out

    def apply(self, view: Mapping[str, Mapping[str, float]]) -> None:
        """Shift the policy's counters onto the merged `view` (charges made since `report` stay on top)."""
        pending = self._pending if self._pending is not None else self.policy.shared_counters()
        shifts: dict[str, dict[str, float]] = {}
        for kind, per in view.items():
            mine = pending.get(kind, {})
            moved = {t: v - mine.get(t, 0.0) for t, v in per.items() if v != mine.get(t, 0.0)}
            if moved:
                shifts[kind] = moved
        self.policy.shift_counters(shifts)
        self._reported = {kind: dict(per) for kind, per in view.items()}
        self._pending = None

    def sync(self, service: CounterService) -> None:
        """Report to and read from an in-process service (one round trip)."""
        self.apply(service.merge(self.report()))
