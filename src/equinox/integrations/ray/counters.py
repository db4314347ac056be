"""The global-counter service as a Ray actor (issue 14 items 2-3).

Each replica's `CounterClient` (scheduling/global_counters.py) sends its report every Δ
seconds and applies the merged view it gets back; the actor runs the same
`CounterService` the simulator's cluster mode runs. With a `snapshot_path` it writes the
merged counters after every merge in the policy-state snapshot envelope
(scheduling/state.py, atomically), and a restarted actor (Ray's `max_restarts`, or a new
actor of the same name) resumes from that file, so a heavy tenant's debt survives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from equinox.integrations.ray.compat import import_ray
from equinox.scheduling.global_counters import CounterReport, CounterService
from equinox.scheduling.state import read_snapshot, write_snapshot

ACTOR_NAME = "equinox-counters"


class CounterActor:
    """The actor's body (plain class: Ray wraps it in `counter_actor`, tests may call it directly)."""

    def __init__(self, snapshot_path: str | None = None, *, forget_after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.snapshot_path = Path(snapshot_path) if snapshot_path else None
        # A replica silent this long (killed, partitioned) is forgotten: its last reported queue would
        # otherwise count as backlog forever and hold the lift floor (None: only `forget` drops it).
        self.forget_after_s = forget_after_s
        self.clock = clock
        self._last_seen: dict[str, float] = {}
        if self.snapshot_path is not None and self.snapshot_path.exists():
            self.service = CounterService.from_snapshot(read_snapshot(self.snapshot_path),
                                                        where=str(self.snapshot_path))
        else:
            self.service = CounterService()

    def merge(self, report: dict[str, Any]) -> dict[str, dict[str, float]]:
        """Merge one replica's report (`CounterReport.as_dict()`), persist, return the merged view."""
        parsed = CounterReport.from_dict(report)
        now = self.clock()
        self._last_seen[parsed.replica] = now
        if self.forget_after_s is not None:
            for replica, seen in list(self._last_seen.items()):
                if now - seen > self.forget_after_s:
                    self.forget(replica)
        view = self.service.merge(parsed)
        if self.snapshot_path is not None:
            write_snapshot(self.snapshot_path, self.service.snapshot(time.time()))
        return view

    def forget(self, replica: str) -> None:
        """A replica left (killed or scaled down): its queue no longer counts as backlog."""
        self.service.forget(replica)
        self._last_seen.pop(replica, None)

    def replicas(self) -> list[str]:
        """Replicas heard from since this actor (re)started and not forgotten."""
        return sorted(self._last_seen)

    def view(self) -> dict[str, dict[str, float]]:
        """The merged counters."""
        return self.service.view()

    def num_merges(self) -> int:
        """Reports merged since the counters began (survives restarts through the snapshot)."""
        return self.service.num_merges


def counter_actor(snapshot_path: str | None = None, *, name: str = ACTOR_NAME, max_restarts: int = -1,
                  namespace: str | None = None, is_detached: bool = False,
                  forget_after_s: float | None = None) -> Any:
    """The named counter actor (created if absent; Ray restarts it from its snapshot when it dies).

    `is_detached`: the actor outlives the process that created it (the Serve application's
    replicas find it by name and namespace)."""
    ray = import_ray()
    cls = ray.remote(num_cpus=0, max_restarts=max_restarts, max_task_retries=-1)(CounterActor)
    options: dict[str, Any] = {"name": name, "get_if_exists": True, "namespace": namespace}
    if is_detached:
        options["lifetime"] = "detached"
    return cls.options(**options).remote(snapshot_path, forget_after_s=forget_after_s)


def sync_with_actor(client: Any, actor: Any, timeout_s: float = 10.0) -> None:
    """One round of the protocol for a replica: report to the actor, apply the merged view."""
    ray = import_ray()
    client.apply(ray.get(actor.merge.remote(client.report().as_dict()), timeout=timeout_s))
