"""Waiting-queue structures shared by policies: a FIFO, per-tenant FIFOs, a lazy min-heap."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from heapq import heapify, heappop, heappush, heapreplace  # names, not module attributes: no lookup per call

from equinox.request import RequestView


class FifoQueue:
    """One queue in arrival order; preempted requests go back to the front."""

    def __init__(self) -> None:
        self._queue: deque[RequestView] = deque()
        self._removed: set[str] = set()
        self._num_per_tenant: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._queue) - len(self._removed)

    def push(self, request: RequestView) -> None:
        """Append at the back."""
        self._queue.append(request)
        self._count(request.tenant, 1)

    def push_front(self, request: RequestView) -> None:
        """Put at the front (preempted requests resume first, as in vLLM)."""
        self._queue.appendleft(request)
        self._count(request.tenant, 1)

    def peek(self) -> RequestView | None:
        """The head, skipping removed entries."""
        q = self._queue
        while q and q[0].request_id in self._removed:
            self._removed.discard(q.popleft().request_id)
        return q[0] if q else None

    def pop(self) -> RequestView:
        """Remove and return the head."""
        head = self.peek()
        if head is None:
            raise IndexError("pop from an empty FifoQueue")
        self._queue.popleft()
        self._count(head.tenant, -1)
        return head

    def remove(self, request: RequestView) -> None:
        """Remove a waiting request in O(1) (lazily)."""
        self._removed.add(request.request_id)
        self._count(request.tenant, -1)

    def num_of(self, tenant: str) -> int:
        """Waiting requests of `tenant`."""
        return self._num_per_tenant.get(tenant, 0)

    def in_order(self) -> list[RequestView]:
        """Waiting requests in the order successive `pop` calls return them (nothing mutated)."""
        removed = set(self._removed)
        listed = []
        for request in self._queue:
            rid = request.request_id
            if rid in removed:
                removed.discard(rid)  # as `peek` does: one removal hides one entry
            else:
                listed.append(request)
        return listed

    def _count(self, tenant: str, delta: int) -> None:
        n = self._num_per_tenant.get(tenant, 0) + delta
        if n:
            self._num_per_tenant[tenant] = n
        else:
            self._num_per_tenant.pop(tenant, None)


class TenantQueues:
    """One FIFO per tenant; a tenant is backlogged while its FIFO is non-empty."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[RequestView]] = {}
        self._num_waiting = 0

    def __len__(self) -> int:
        return self._num_waiting

    def push(self, request: RequestView, *, front: bool = False) -> bool:
        """Enqueue; returns True when the tenant just became backlogged."""
        q = self._queues.get(request.tenant)
        if q is None:
            q = self._queues[request.tenant] = deque()
        was_empty = not q
        if front:
            q.appendleft(request)
        else:
            q.append(request)
        self._num_waiting += 1
        return was_empty

    def head(self, tenant: str) -> RequestView | None:
        """The oldest waiting request of `tenant`."""
        q = self._queues.get(tenant)
        return q[0] if q else None

    def pop(self, tenant: str) -> bool:
        """Remove the head of `tenant`'s queue; returns True when the tenant stops being backlogged."""
        q = self._queues[tenant]
        q.popleft()
        self._num_waiting -= 1
        return not q

    def remove(self, request: RequestView) -> bool:
        """Remove a specific waiting request; returns True when its tenant stops being backlogged."""
        q = self._queues.get(request.tenant)
        if not q:
            return False
        for i, r in enumerate(q):
            if r.request_id == request.request_id:
                del q[i]
                self._num_waiting -= 1
                return not q
        return False

    def is_backlogged(self, tenant: str) -> bool:
        """True while `tenant` has waiting requests."""
        return bool(self._queues.get(tenant))

    def num_of(self, tenant: str) -> int:
        """Waiting requests of `tenant`."""
        q = self._queues.get(tenant)
        return len(q) if q else 0

    def backlogged(self) -> Iterator[str]:
        """Tenants with waiting requests (insertion order)."""
        return (t for t, q in self._queues.items() if q)

    def copy(self) -> TenantQueues:
        """An independent copy (the requests themselves are shared), O(waiting + tenants)."""
        clone = TenantQueues()
        clone._queues = {t: deque(q) for t, q in self._queues.items()}
        clone._num_waiting = self._num_waiting
        return clone


class TenantPriorityQueues:
    """One priority queue per tenant (smallest key first); same interface as TenantQueues.

    Requests pushed with `front=True` (preempted ones) go before every keyed request, in
    the order they were requeued last-first, like TenantQueues' appendleft.
    """

    def __init__(self, key: Callable[[RequestView], float]) -> None:
        self._key = key
        self._heaps: dict[str, list[tuple[float, int, RequestView]]] = {}
        self._removed: set[str] = set()
        self._num: dict[str, int] = {}
        self._seq = 0
        self._front_seq = 0
        self._num_waiting = 0

    def __len__(self) -> int:
        return self._num_waiting

    def push(self, request: RequestView, *, front: bool = False) -> bool:
        """Enqueue; returns True when the tenant just became backlogged."""
        tenant = request.tenant
        heap = self._heaps.get(tenant)
        if heap is None:
            heap = self._heaps[tenant] = []
        if front:
            self._front_seq -= 1
            entry = (-math.inf, self._front_seq, request)
        else:
            self._seq += 1
            entry = (self._key(request), self._seq, request)
        heappush(heap, entry)
        n = self._num.get(tenant, 0)
        self._num[tenant] = n + 1
        self._num_waiting += 1
        return n == 0

    def _clean(self, tenant: str) -> list[tuple[float, int, RequestView]] | None:
        heap = self._heaps.get(tenant)
        removed = self._removed
        if removed:  # nothing removed lately (most of the time): no request to read
            while heap and heap[0][2].request_id in removed:
                removed.discard(heappop(heap)[2].request_id)
        return heap

    def head(self, tenant: str) -> RequestView | None:
        """The tenant's request with the smallest key."""
        heap = self._clean(tenant)
        return heap[0][2] if heap else None

    def pop(self, tenant: str) -> bool:
        """Remove the head of `tenant`'s queue; returns True when the tenant stops being backlogged."""
        heap = self._clean(tenant)
        assert heap, f"pop from tenant {tenant!r} with nothing waiting"
        heappop(heap)
        return self._dec(tenant)

    def _dec(self, tenant: str) -> bool:
        self._num_waiting -= 1
        n = self._num[tenant] - 1
        self._num[tenant] = n
        return n == 0

    def remove(self, request: RequestView) -> bool:
        """Remove a waiting request (lazily); returns True when its tenant stops being backlogged."""
        heap = self._heaps.get(request.tenant)
        if not heap or not any(e[2].request_id == request.request_id for e in heap):
            return False
        self._removed.add(request.request_id)
        return self._dec(request.tenant)

    def is_backlogged(self, tenant: str) -> bool:
        """True while `tenant` has waiting requests."""
        return self._num.get(tenant, 0) > 0

    def num_of(self, tenant: str) -> int:
        """Waiting requests of `tenant`."""
        return self._num.get(tenant, 0)

    def backlogged(self) -> Iterator[str]:
        """Tenants with waiting requests (insertion order)."""
        return (t for t, n in self._num.items() if n)

    def copy(self) -> TenantPriorityQueues:
        """An independent copy (the requests themselves are shared), O(waiting + tenants)."""
        clone = TenantPriorityQueues(self._key)
        clone._heaps = {t: list(heap) for t, heap in self._heaps.items()}
        clone._removed = set(self._removed)
        clone._num = dict(self._num)
        clone._seq, clone._front_seq, clone._num_waiting = self._seq, self._front_seq, self._num_waiting
        return clone


class LazyMinHeap:
    """Min-selection over tenants whose keys change, in O(log n) amortised.

    Keys are read through `key_of`; entries hold the key at push time. An entry whose
    stored key is below the current key is re-pushed when it reaches the top (keys that
    rose lazily); callers push again whenever a key *drops*, so the smallest entry of a
    member is never above its current key. Ties break by the order members were first seen.

    Each member has one live entry: `add` supersedes the member's older entries (they are
    dropped when they surface), and the heap is rebuilt when stale entries outnumber live
    ones, so a tenant that goes idle and comes back many times costs nothing extra.
    """

    def __init__(self, key_of: Callable[[str], float]) -> None:
        self._key_of = key_of
        self._heap: list[tuple[float, int, int, str]] = []
        self._live: dict[str, int] = {}  # member -> generation of its live entry
        self._order: dict[str, int] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, member: object) -> bool:
        return member in self._live

    def add(self, member: str) -> None:
        """Insert `member` (or refresh it after its key dropped)."""
        order = self._order.setdefault(member, len(self._order))
        self._generation += 1
        self._live[member] = self._generation
        heap = self._heap
        if len(heap) > 2 * len(self._live) + 16:
            self._rebuild()
        else:
            heappush(heap, (self._key_of(member), order, self._generation, member))

    def rekey(self) -> None:
        """Re-read every member's key (after the key function itself changed)."""
        self._rebuild()

    def _rebuild(self) -> None:
        """Drop every stale entry: one fresh entry per live member."""
        key_of, order = self._key_of, self._order
        self._heap = [(key_of(m), order[m], gen, m) for m, gen in self._live.items()]
        heapify(self._heap)

    def discard(self, member: str) -> None:
        """Remove `member`; its stale entries are dropped when they surface."""
        self._live.pop(member, None)

    def tie_order(self) -> list[str]:
        """Every member ever seen, in the order that breaks ties (policy state to export)."""
        return sorted(self._order, key=self._order.__getitem__)

    def restore_tie_order(self, members: list[str]) -> None:
        """Resume the tie order of `tie_order()` (before any member is added)."""
        self._order = {m: i for i, m in enumerate(dict.fromkeys(members))}

    def min(self) -> str | None:
        """The member with the smallest current key."""
        heap = self._heap
        live = self._live
        while heap:
            key, order, gen, member = heap[0]
            if live.get(member) != gen:
                heappop(heap)  # discarded, or superseded by a newer add
                continue
            current = self._key_of(member)
            if current == key:
                return member
            # The key moved since this entry was pushed: re-insert at its true place.
            heapreplace(heap, (current, order, gen, member))
        return None

    def members(self) -> Iterator[str]:
        """Current members (unordered)."""
        return iter(self._live)

    def copy(self, key_of: Callable[[str], float]) -> LazyMinHeap:
        """An independent copy reading keys through `key_of` (the copy's owner's key function)."""
        clone = LazyMinHeap(key_of)
        clone._heap = list(self._heap)
        clone._live = dict(self._live)
        clone._order = dict(self._order)
        clone._generation = self._generation
        return clone
