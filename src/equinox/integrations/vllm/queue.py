"""vLLM's waiting queue, backed by an Equinox policy; plus the read-only request view policies see.

vLLM's scheduler asks its `waiting` queue for `peek_request`/`pop_request` and puts
preempted or skipped requests back with `prepend_request(s)`. `PolicyWaitingQueue`
implements that duck-typed `RequestQueue` surface on top of `Policy.peek/pop/requeue/abort`,
so whichever registered policy runs decides who is admitted next; iterating or indexing it
lists the waiting requests in that same order (`Policy.waiting()`), as vLLM's queues do. This module never
imports vLLM: it only reads attributes of vLLM's `Request` (request_id, num_prompt_tokens,
max_tokens, num_computed_tokens, num_output_tokens, num_preemptions, sampling_params).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from equinox.integrations.vllm.settings import PluginSettings
from equinox.scheduling.interface import Policy

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class VllmRequestView:
    """Adapts a vLLM `Request` to Equinox's `RequestView` protocol (times from the host's clock)."""

    __slots__ = ("admit_seq", "arrival_time", "first_token_time", "problem", "request", "tenant")

    def __init__(self, request: Any, tenant: str, arrival_time: float, problem: str | None = None) -> None:
        self.request = request
        self.tenant = tenant
        self.arrival_time = arrival_time
        self.admit_seq = -1
        self.first_token_time: float | None = None
        self.problem = problem

    @property
    def request_id(self) -> str:
        """vLLM's request id."""
        return str(self.request.request_id)

    @property
    def num_prompt_tokens(self) -> int:
        """Prompt length in tokens."""
        return int(self.request.num_prompt_tokens)

    @property
    def max_tokens(self) -> int | None:
        """The request's output cap."""
        value = getattr(self.request, "max_tokens", None)
        return None if value is None else int(value)

    @property
    def num_computed_tokens(self) -> int:
        """Tokens whose KV is in cache."""
        return int(self.request.num_computed_tokens)

    @property
    def num_output_tokens_done(self) -> int:
        """Output tokens generated so far."""
        return int(self.request.num_output_tokens)

    @property
    def num_preemptions(self) -> int:
        """Times vLLM preempted the request."""
        return int(self.request.num_preemptions)


class PolicyWaitingQueue:
    """A vLLM `RequestQueue` whose order is decided by an Equinox `Policy`.

    `views` maps request ids to their views for every request the host knows (waiting
    or running); the queue creates a view the first time it sees a request.
    """

    def __init__(
        self, policy: Policy, settings: PluginSettings, clock: Clock,
        on_admit: Callable[[VllmRequestView], None] | None = None,
    ) -> None:
        self.policy = policy
        self.on_admit = on_admit
        self.settings = settings
        self.clock = clock
        self.views: dict[str, VllmRequestView] = {}
        self._waiting: dict[str, Any] = {}  # request_id -> vLLM Request, insertion-ordered
        self._next_admit_seq = 0
        self.rejected: list[tuple[Any, str]] = []  # (request, reason) the policy refused

    # Views -----------------------------------------------------------------------
    def view_of(self, request: Any) -> VllmRequestView:
        """The view of `request`, created (tenant resolved) on first sight."""
        rid = str(request.request_id)
        view = self.views.get(rid)
        if view is None:
            params = getattr(request, "sampling_params", None)
            extra = getattr(params, "extra_args", None) if params is not None else None
            tenant, problem = self.settings.resolve_tenant(extra)
            if problem is not None:
                logger.warning("request %s: %s; served as tenant %r", rid, problem, tenant)
            view = VllmRequestView(request, tenant, self.clock(), problem)
            self.views[rid] = view
        return view

    def forget(self, request_id: str) -> VllmRequestView | None:
        """Drop the view of a request that left the engine."""
        self._waiting.pop(request_id, None)
        return self.views.pop(request_id, None)

    # RequestQueue surface -----------------------------------------------------------
    def add_request(self, request: Any) -> None:
        """A new (or resumed streaming) request enters the waiting queue."""
        view = self.view_of(request)
        reason = self.policy.add_request(view, self.clock())
        if reason is not None:
            self.rejected.append((request, reason))
            return
        self._waiting[view.request_id] = request

    def _head(self) -> Any:
        view = self.policy.peek(self.clock())
        if view is None:
            raise IndexError("peek from an empty Equinox waiting queue")
        request = self._waiting.get(view.request_id)
        if request is None:  # the policy and the queue disagree: a bug, say which request
            raise RuntimeError(f"policy {self.policy.name!r} returned request {view.request_id} that is not waiting")
        return request

    def peek_request(self) -> Any:
        """The request the policy wants admitted next."""
        return self._head()

    def pop_request(self) -> Any:
        """Admit the policy's choice (vLLM peeks first, then pops the same request)."""
        request = self._head()
        view = self.views[str(request.request_id)]
        self.policy.pop(view, self.clock())
        del self._waiting[view.request_id]
        if view.admit_seq < 0:
            view.admit_seq = self._next_admit_seq
            self._next_admit_seq += 1
            if self.on_admit is not None:
                self.on_admit(view)
        return request

    def prepend_request(self, request: Any) -> None:
        """A preempted (or skipped) request goes back to the front of its tenant's queue."""
        view = self.view_of(request)
        if view.request_id in self._waiting:
            return
        self.policy.requeue(view, self.clock())
        self._waiting[view.request_id] = request

    def prepend_requests(self, requests: Iterable[Any]) -> None:
        """Put several requests back, each to the front in turn (as `deque.extendleft` does)."""
        for request in list(requests):
            self.prepend_request(request)

    def remove_request(self, request: Any) -> None:
        """A waiting request was aborted or finished."""
        rid = str(request.request_id)
        if self._waiting.pop(rid, None) is not None:
            self.policy.abort(self.views[rid], self.clock())

    def remove_requests(self, requests: Iterable[Any]) -> None:
        """Remove several waiting requests."""
        for request in requests:
            self.remove_request(request)

    def __bool__(self) -> bool:
        # vLLM peeks whenever the queue is truthy: be truthy only when a head exists
        # (a rate-limiting policy may hold requests it does not want admitted yet).
        return bool(self._waiting) and self.policy.peek(self.clock()) is not None

    def __len__(self) -> int:
        return len(self._waiting)

    def __iter__(self) -> Iterator[Any]:
        """Waiting requests in the order the policy would admit them (as vLLM's queues iterate)."""
        return iter(self.in_policy_order())

    def __getitem__(self, index: int) -> Any:
        """The request `index` places from the head in policy order (vLLM's FCFS queue is a deque)."""
        return self.in_policy_order()[index]

    def in_policy_order(self) -> list[Any]:
        """Every waiting request, in `policy.waiting()` order: O(waiting x log tenants) per call.

        vLLM iterates or indexes its waiting queue only outside the scheduling loop (tests,
        pause/resume, KV release), never per step. A policy that cannot list its queue, or
        lists only part of it, has the rest appended in arrival order.
        """
        waiting = self._waiting
        try:
            listed = [waiting[view.request_id] for view in self.policy.waiting() if view.request_id in waiting]
        except NotImplementedError:
            return list(waiting.values())
        if len(listed) < len(waiting):
            seen = {str(request.request_id) for request in listed}
            listed += [request for rid, request in waiting.items() if rid not in seen]
        return listed

    def __contains__(self, request: object) -> bool:
        return str(getattr(request, "request_id", "")) in self._waiting
