"""First come, first served: one queue in arrival order, no isolation between tenants."""

from __future__ import annotations

from collections.abc import Iterator

from equinox.compiled import mypyc_attr
from equinox.request import RequestView
from equinox.scheduling.interface import Policy, PolicyConfig
from equinox.scheduling.policy import POLICIES
from equinox.scheduling.queues import FifoQueue


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled core: Python subclasses still work
class FcfsPolicy(Policy):
    """Serve requests in arrival order (vLLM's default)."""

    name = "fcfs"

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__(config)
        self.parse_params(self.config.params)  # FCFS and RPM take none: any key is an error naming it
        self._queue = FifoQueue()

    def add_request(self, request: RequestView, now: float) -> str | None:
        """Append to the single queue; FCFS never rejects."""
        self._queue.push(request)
        return None

    def peek(self, now: float) -> RequestView | None:
        """The oldest waiting request."""
        return self._queue.peek()

    def pop(self, request: RequestView, now: float) -> None:
        """Admit the head."""
        self._queue.pop()

    def requeue(self, request: RequestView, now: float) -> None:
        """Preempted requests resume first."""
        self._queue.push_front(request)

    def abort(self, request: RequestView, now: float) -> None:
        """Drop a waiting request."""
        self._queue.remove(request)

    @property
    def num_waiting(self) -> int:
        """Requests waiting."""
        return len(self._queue)

    def num_waiting_of(self, tenant: str) -> int:
        """Requests of `tenant` waiting."""
        return self._queue.num_of(tenant)

    def waiting(self) -> Iterator[RequestView]:
        """Waiting requests in admission order (preempted ones first, then arrival order)."""
        return iter(self._queue.in_order())


POLICIES.register("fcfs", FcfsPolicy, "first come, first served (no tenant isolation)")
