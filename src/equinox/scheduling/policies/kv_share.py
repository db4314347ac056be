"""KV fair share for Equinox (issue 11, isolation): each active tenant's weighted share of the KV pool.

A well-behaved tenant's TTFT under VTC-style ordering is dominated by waiting for KV memory: the
head of the queue belongs to a flooding tenant whose admission waits for its own tenant's running
requests to free memory, and no skipping holds every other tenant behind it. This book says who
is under or over its share, so the policy can let an under-share tenant pass such a head and admit
it on its own predicted peak, and make an over-share admission leave room for the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from equinox.scheduling.state import StateReader


@dataclass
class KvShares:
    """KV tokens held and the weighted share of the pool per active tenant, at one decision."""

    held: dict[str, float]
    share: dict[str, float]
    typical: Mapping[str, float]

    def is_under(self, tenant: str) -> bool:
        """True if one more typical request of `tenant` keeps it within its share."""
        return self.held.get(tenant, 0.0) + self.typical.get(tenant, 0.0) <= self.share.get(tenant, 0.0)

    def passes(self, head: str, waiting: Iterable[str], counter: Mapping[str, float], slack: float) -> str | None:
        """The tenant to serve before `head`'s tenant, if `head` is over its share: the waiting tenant
        under its share with the lowest counter at most `slack` above the head's (None: keep the head)."""
        if self.is_under(head):
            return None
        limit = counter.get(head, 0.0) + slack
        best: tuple[float, str] | None = None
        for tenant in sorted(waiting):
            value = counter.get(tenant, 0.0)
            if tenant != head and value <= limit and self.is_under(tenant) and (best is None or value < best[0]):
                best = (value, tenant)
        return None if best is None else best[1]


@dataclass
class KvShareBook:
    """What the KV fair share remembers between decisions (exported with the policy's state)."""

    window_s: float  # a tenant counts as active this long after its latest arrival
    last_arrival: dict[str, float] = field(default_factory=dict)
    typical: dict[str, float] = field(default_factory=dict)  # latest request's predicted peak tokens
    kv_blocks: tuple[int, int] = (0, 0)  # blocks used and in the pool at the end of the latest step
    typical_bound: int = 0  # sum of every tenant's typical size rounded up: `reservation` adds at most this
    # The active tenants and their weights in name order with the weights' sum, as `shares` last worked them
    # out for the weight function it was given (whose answers are taken to be fixed, as a policy's are): the
    # same tenants give the same floats again, without a call per tenant and a sort at every decision.
    _active: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    _weight: Callable[[str], float] | None = field(default=None, init=False, repr=False, compare=False)
    _weights: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)
    _weight_sum: float = field(default=0.0, init=False, repr=False, compare=False)

    def note_arrival(self, tenant: str, arrival_time: float, peak_tokens: float) -> None:
        """A request arrived: its tenant is active, and a request of its takes about this much KV."""
        self.last_arrival[tenant] = arrival_time
        old = self.typical.get(tenant)
        self.typical[tenant] = peak_tokens
        self.typical_bound += math.ceil(peak_tokens) - (0 if old is None else math.ceil(old))

    def shares(
        self, held: dict[str, float], tenant: str, backlogged: Iterable[str], now: float,
        weight: Callable[[str], float],
    ) -> KvShares | None:
        """Shares among active tenants (holding KV, waiting, arrived within the window, or `tenant`).

        The pool's size in tokens is estimated from the tokens held per used block at the latest
        step. None while nothing is held (nothing to share).
        """
        used, total = self.kv_blocks
        held_sum = sum(held.values())
        if used <= 0 or held_sum <= 0:
            return None
        capacity = total * held_sum / used
        active = set(held)
        active.add(tenant)
        active.update(backlogged)
        window = self.window_s
        for t, at in self.last_arrival.items():
            if now - at <= window:
                active.add(t)
        if active != self._active or weight != self._weight:
            self._active = active
            self._weight = weight
            # In name order: a set's order follows the process's string hashes, and a float sum its order.
            self._weights = {t: weight(t) for t in sorted(active)}
            self._weight_sum = sum(self._weights.values())
        scale = capacity / self._weight_sum
        return KvShares(held, {t: scale * w for t, w in self._weights.items()}, self.typical)

    def reservation(self, shares: KvShares, tenant: str, prompt_tokens: int, peak: int) -> int:
        """Free KV to require before admitting a request of `tenant` (`peak`: the predicted-peak rule's).

        Within its share, the request needs only its own predicted peak free (others' predicted
        growth is theirs to be preempted for); otherwise it also leaves room for one typical
        request of each active tenant still under its share.
        """
        if shares.is_under(tenant):
            return min(peak, int(self.typical.get(tenant, float(prompt_tokens))) + 1)
        reserve = sum(self.typical.get(t, 0.0) for t in sorted(shares.share) if t != tenant and shares.is_under(t))
        return peak + int(reserve)

    def export(self) -> dict[str, Any]:
        """Plain data for the policy's state envelope."""
        return {"last_arrival": dict(self.last_arrival), "typical": dict(self.typical),
                "kv_blocks": list(self.kv_blocks)}

    def restore(self, r: StateReader) -> None:
        """Resume from `export()` (missing: empty)."""
        self.last_arrival = r.number_map("last_arrival")
        self.typical = r.number_map("typical")
        self.typical_bound = sum(math.ceil(v) for v in self.typical.values())
        blocks = r.numbers("kv_blocks") or [0.0, 0.0]
        if len(blocks) != 2:
            raise r.error("kv_blocks", "two numbers (blocks used, blocks in the pool)", blocks)
        self.kv_blocks = (int(blocks[0]), int(blocks[1]))
