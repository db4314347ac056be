"""Replica choice for the fair replicas through Ray Serve's `RequestRouter` API (issue 14 item 1).

Least outstanding work, seen from the tenant: a replica's work ahead of a request of
tenant t is what runs there plus the waiting requests of tenants whose counter is no
higher than t's (those the replica's policy serves first), as the simulator's
`equinox-global` router counts it. The per-tenant figures come from the replicas'
routing stats (`FairQueue.stats`, every `request_routing_stats_period_s`), so they lag;
the freshest queue length known (Serve's queue-length cache when it is on, else the
requests this router has put on the replica and not yet seen complete) covers the
requests sent since the stats were taken, counted as ahead. Ties go to the replica
with less work overall, then to the one this router picked fewer times, so a burst
that arrives between two stats refreshes alternates instead of landing on one replica.
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
                  tenant: str | None, picks: Mapping[str, int] | None = None) -> list[str]:
    """Replica ids best first, from (id, routing stats, fresh queue length or None) triples.

    `picks` (times each replica was ranked first before) breaks the remaining ties.
    """
    picks = picks or {}

    def key(item: tuple[str, Mapping[str, Any], int | None]) -> tuple[int, int, int, str]:
        rid, stats, queue_len = item
        total = int(stats.get("num_running", 0)) + int(stats.get("num_waiting", 0))
        fresh = total if queue_len is None else queue_len
        return work_ahead(stats, tenant) + max(0, fresh - total), fresh, picks.get(rid, 0), rid

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
    """Least work ahead of the request's tenant (see the module docstring); every replica ranked, best first.

    Serve keeps its queue-length cache only with strict `max_ongoing_requests`, so the
    router also counts its own requests in flight per replica: a request counts on the
    replica it was last ranked first for (a retry moves it), until Serve reports it completed.
    """

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        """One rank per replica, best first; Serve tries them in order (probing each for room)."""
        if not candidate_replicas:
            return []
        in_flight, placed, picks = self._ledger()
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        cache = self.replica_queue_len_cache
        items = []
        for rid, r in by_id.items():
            cached = cache.get(r.replica_id)
            items.append((rid, r.routing_stats or {}, cached if cached is not None else in_flight.get(rid)))
        ranked = rank_replicas(items, tenant_of(pending_request), picks)
        first = ranked[0]
        picks[first] = picks.get(first, 0) + 1
        request_id = pending_request.metadata.internal_request_id if pending_request is not None else None
        if request_id is not None:
            before = placed.get(request_id)
            if before is not None:
                in_flight[before] -= 1
            placed[request_id] = first
            in_flight[first] = in_flight.get(first, 0) + 1
        return [[by_id[rid]] for rid in ranked]

    def on_request_completed(self, replica_id: Any, internal_request_id: str) -> None:
        """A request finished: it no longer counts where it was placed."""
        in_flight, placed, _ = self._ledger()
        rid = placed.pop(internal_request_id, None)
        if rid is not None:
            in_flight[rid] -= 1

    def _ledger(self) -> tuple[dict[str, int], dict[str, str], dict[str, int]]:
        """(requests in flight per replica, replica of each request in flight, first-rank picks per replica)."""
        ledger = self.__dict__.get("_equinox_ledger")
        if ledger is None:
            ledger = self.__dict__["_equinox_ledger"] = ({}, {}, {})
        return ledger  # type: ignore[no-any-return]
