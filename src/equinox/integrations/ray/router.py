"""Replica choice for the fair replicas through Ray Serve's `RequestRouter` API (issue 14 item 1).

Least outstanding work, seen from the tenant: a replica's work ahead of a request of
tenant t is what runs there plus the waiting requests of tenants whose counter is no
higher than t's (those the replica's policy serves first), as the simulator's
`equinox-global` router counts it. The per-tenant figures come from the replicas'
routing stats (`FairQueue.stats`, every `request_routing_stats_period_s`), so they lag;
Serve's own queue-length cache is fresher, and requests sent to a replica since its
stats were taken are counted as ahead. Ties go to the replica with less work overall.
`rank_replicas` is the pure ranking; `FairRequestRouter` the Serve class that calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica


def work_ahead(stats: Mapping[str, Any], tenant: str | None) -> int:
    """Requests a new request of `tenant` would wait behind on a replica with these stats."""
    running = int(stats.get("num_running", 0))
    waiting: Mapping[str, int] = stats.get("waiting_by_tenant", {}) or {}
    if tenant is None:
        return running + sum(waiting.values())
    counters: Mapping[str, float] = stats.get("counters", {}) or {}
    mine = counters.get(tenant, 0.0)
    return running + sum(n for t, n in waiting.items() if counters.get(t, 0.0) <= mine)


def rank_replicas(replicas: Sequence[tuple[str, Mapping[str, Any], int | None]],
                  tenant: str | None) -> list[str]:
    """Replica ids best first, from (id, routing stats, fresh queue length or None) triples."""

    def key(item: tuple[str, Mapping[str, Any], int | None]) -> tuple[int, int, str]:
        rid, stats, queue_len = item
        total = int(stats.get("num_running", 0)) + int(stats.get("num_waiting", 0))
        fresh = total if queue_len is None else queue_len
        return work_ahead(stats, tenant) + max(0, fresh - total), fresh, rid

    return [rid for rid, _, _ in sorted(replicas, key=key)]


def tenant_of(pending: PendingRequest | None) -> str | None:
    """The tenant of a call `generate(job)`: the ingress puts it in the job."""
    if pending is None:
        return None
    job = pending.args[0] if pending.args else pending.kwargs.get("job")
    if isinstance(job, Mapping):
        tenant = job.get("tenant")
        return tenant if isinstance(tenant, str) else None
    return None


class FairRequestRouter(FIFOMixin, RequestRouter):
    """Least work ahead of the request's tenant (see the module docstring); every replica ranked, best first."""

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        """One rank per replica, best first; Serve tries them in order (probing each for room)."""
        if not candidate_replicas:
            return []
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        cache = self.replica_queue_len_cache
        items = [(rid, r.routing_stats or {}, cache.get(r.replica_id)) for rid, r in by_id.items()]
        return [[by_id[rid]] for rid in rank_replicas(items, tenant_of(pending_request))]
