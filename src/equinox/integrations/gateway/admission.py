"""Admission: per-tenant fair queueing and placement on backends, on the gateway's event loop.

A request is added to the policy when it arrives (the policy may reject it: `rpm`), and
dispatched when the policy's head request has a backend with window room. Heads are
never skipped: when the head cannot be placed, admission stops until a slot frees
(the simulator's rule). Everything runs on one asyncio loop, so no locks are needed.

Placement has one owner (issue #12): this class picks the backend (healthy, serving
the model, window room, least outstanding work per window slot), counts what is in
flight there and its outstanding work (prompt plus output bound of each request, less
what was computed, as of the last usage report), feeds the backend's adaptive window its latency samples and marks it
failed. The request handler enters it four times per request (`submit`,
`wait_dispatch`, `on_first_token`, `finish`), plus `retry` after a backend failure;
streamed tokens are recorded on the request itself (`GatewayRequest.add_output`) and
read from there, so the count does not grow with the length of the answer.

Service accounting: the policy's `on_step` expects iteration reports from an engine.
The gateway has none, so every `usage_report_interval_s` it synthesises a StepReport
whose `per_tenant` holds the output tokens each tenant received since the last report
(counted from the streamed chunks) and the prompt tokens of requests whose first
token arrived in that interval (prefill done). VTC and Equinox thus charge output
tokens as they stream, and charge nothing more once a client has gone. Batch shape
and KV fields are approximations (decode sequences = streams in flight; no KV data).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from equinox.integrations.gateway.backends import Backend
from equinox.integrations.gateway.config import GatewayConfig
from equinox.scheduling.interface import Policy
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """An HTTP error the gateway answers with (status, OpenAI-style message, optional Retry-After)."""

    def __init__(self, status: int, message: str, *, kind: str = "gateway_error", retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class GatewayRequest:
    """One client request; also the RequestView the policy reads."""

    request_id: str
    tenant: str
    arrival_time: float
    num_prompt_tokens: int
    max_tokens: int | None
    model: str
    num_computed_tokens: int = 0
    num_output_tokens_done: int = 0
    num_preemptions: int = 0  # times it was requeued after a backend failed before its first token
    admit_seq: int = -1
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    tried: list[str] = field(default_factory=list)
    backend: Backend | None = None
    last_error: str = ""
    is_running: bool = False
    is_done: bool = False
    _future: asyncio.Future[Backend] | None = None
    _num_output_reported: int = 0  # output tokens already handed to the policy in a usage report
    _charged_tokens: float = 0.0  # this request's share of its backend's outstanding work

    def add_output(self, num_tokens: int) -> None:
        """`num_tokens` more output tokens reached the gateway (ignored once the request has ended)."""
        if num_tokens > 0 and not self.is_done:
            self.num_output_tokens_done += num_tokens
            self.num_computed_tokens += num_tokens


class Admission:
    """The fair queue in front of the backends (see the module docstring)."""

    def __init__(self, policy: Policy, backends: Sequence[Backend], config: GatewayConfig,
                 clock: Callable[[], float], on_event: Callable[[str, GatewayRequest], None] | None = None) -> None:
        self.policy = policy
        self.backends = list(backends)
        self.config = config
        self.clock = clock
        self._on_event = on_event or (lambda kind, req: None)
        self._tenants = {t.name: t for t in config.tenants}
        self._seq = itertools.count()
        self._waiting: dict[str, GatewayRequest] = {}
        self.running: dict[str, GatewayRequest] = {}
        self._pending_output: dict[str, int] = {}
        self._pending_prompt: dict[str, int] = {}
        self._step_id = 0
        self._last_report_time = 0.0

    # Arrival ------------------------------------------------------------------------
    def submit(self, req: GatewayRequest) -> None:
        """Queue `req` or raise GatewayError (429 queue full / rate limit, 503 gateway full)."""
        tenant = self._tenants[req.tenant]
        retry = self.config.retry_after_s
        if self.policy.num_waiting_of(req.tenant) >= tenant.max_queue:
            raise GatewayError(429, f"tenant {req.tenant!r} has {tenant.max_queue} requests queued (its max_queue); "
                               "retry later", kind="queue_full", retry_after_s=retry)
        if self.policy.num_waiting >= self.config.max_queue_total:
            raise GatewayError(429, f"the gateway queue is full ({self.config.max_queue_total} requests); retry later",
                               kind="queue_full", retry_after_s=retry)
        reason = self.policy.add_request(req, req.arrival_time)
        if reason is not None:
            raise GatewayError(429, reason, kind="rate_limit", retry_after_s=retry)
        req._future = asyncio.get_running_loop().create_future()
        self._waiting[req.request_id] = req
        self.pump()

    async def wait_dispatch(self, req: GatewayRequest) -> Backend:
        """Wait until `req` is given a backend; 503 after queue_timeout_s, 502/503 when no backend is left."""
        fut = req._future
        assert fut is not None, "submit() first"
        timeout = max(0.0, self.config.queue_timeout_s - (self.clock() - req.arrival_time))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self.cancel(req)
            raise GatewayError(503, f"request waited longer than queue_timeout_s={self.config.queue_timeout_s:g} s "
                               "for a backend; retry later", kind="queue_timeout",
                               retry_after_s=self.config.retry_after_s) from None

    # Dispatch --------------------------------------------------------------------------
    def pump(self) -> None:
        """Dispatch policy heads while they can be placed (never skipping a head)."""
        now = self.clock()
        while True:
            view = self.policy.peek(now)
            if view is None:
                return
            req = self._waiting.get(view.request_id)
            if req is None:  # cannot happen: every waiting request is ours
                logger.error("policy returned unknown request %s", view.request_id)
                self.policy.pop(view, now)
                continue
            if not self._serving(req.model, now, req.tried):
                self._fail_unplaceable(req, now)
                continue
            backend = self._pick(req.model, now, req.tried)
            if backend is None:
                return  # head does not fit: wait for a slot
            self.policy.pop(req, now)
            del self._waiting[req.request_id]
            self._start(req, backend, now)

    def _fail_unplaceable(self, req: GatewayRequest, now: float) -> None:
        """No healthy backend (left) for the head: take it out (uncharged when never dispatched) and fail it."""
        self.policy.abort(req, now)
        del self._waiting[req.request_id]
        if req.tried:
            err = GatewayError(502, f"backend(s) {', '.join(req.tried)} failed before the first token "
                               f"({req.last_error}) and no other healthy backend serves model {req.model!r}",
                               kind="backend_error")
        else:
            err = GatewayError(503, f"no healthy backend serves model {req.model!r} right now; retry later",
                               kind="no_backend", retry_after_s=self.config.retry_after_s)
        if req.first_scheduled_time is not None:  # dispatched before: it was charged
            self.policy.on_finish(req, now)
        req.is_done = True
        req.finish_time = now
        if req._future is not None and not req._future.done():
            req._future.set_exception(err)
            req._future.exception()  # mark retrieved: the waiter may already be gone

    def fail_waiting(self, err: GatewayError) -> int:
        """Take every waiting request out of the policy (uncharged unless dispatched before) and fail it."""
        now = self.clock()
        waiting = list(self._waiting.values())
        for req in waiting:
            self.policy.abort(req, now)
            del self._waiting[req.request_id]
            if req.first_scheduled_time is not None:
                self.policy.on_finish(req, now)
            req.is_done = True
            req.finish_time = now
            if req._future is not None and not req._future.done():
                req._future.set_exception(err)
                req._future.exception()
        return len(waiting)

    def _start(self, req: GatewayRequest, backend: Backend, now: float) -> None:
        req.admit_seq = next(self._seq)
        if req.first_scheduled_time is None:
            req.first_scheduled_time = now
        req.backend = backend
        req.is_running = True
        req.tried.append(backend.name)
        backend.num_in_flight += 1
        backend.num_requests += 1
        req._charged_tokens = float(req.num_prompt_tokens + (req.max_tokens or 0))
        backend.outstanding_tokens += req._charged_tokens
        self.running[req.request_id] = req
        self._on_event("dispatch", req)
        assert req._future is not None
        if not req._future.done():
            req._future.set_result(backend)

    # Progress ---------------------------------------------------------------------------
    def on_first_token(self, req: GatewayRequest, upstream_ttft_s: float) -> None:
        """The first token of `req` arrived: credit its prompt, tell the policy, sample the window."""
        now = self.clock()
        req.first_token_time = now
        req.num_computed_tokens = req.num_prompt_tokens + req.num_output_tokens_done
        self._pending_prompt[req.tenant] = self._pending_prompt.get(req.tenant, 0) + req.num_prompt_tokens
        self.policy.on_first_token(req, now)
        self._consume_work(req, req.num_prompt_tokens)
        backend = req.backend
        if backend is not None and backend.window.on_sample(now, ttft_s=upstream_ttft_s):
            self.pump()
        self._on_event("first_token", req)

    def _collect_output(self, req: GatewayRequest) -> None:
        """Charge what `req` streamed since the last look to its tenant and take it off its backend's work."""
        num_new = req.num_output_tokens_done - req._num_output_reported
        if num_new > 0:
            req._num_output_reported = req.num_output_tokens_done
            self._pending_output[req.tenant] = self._pending_output.get(req.tenant, 0) + num_new
            self._consume_work(req, num_new)

    def _consume_work(self, req: GatewayRequest, num_tokens: int) -> None:
        backend = req.backend
        if backend is None:
            return
        take = min(req._charged_tokens, float(num_tokens))
        req._charged_tokens -= take
        backend.outstanding_tokens = max(0.0, backend.outstanding_tokens - take)

    def _release(self, req: GatewayRequest) -> Backend | None:
        self._collect_output(req)  # what streamed before the end is charged; nothing after it
        backend = req.backend
        if backend is not None and req.is_running:
            backend.num_in_flight -= 1
            backend.outstanding_tokens = max(0.0, backend.outstanding_tokens - req._charged_tokens)
            req._charged_tokens = 0.0
        self.running.pop(req.request_id, None)
        req.is_running = False
        return backend

    def retry(self, req: GatewayRequest, error: str) -> bool:
        """`req`'s backend failed before the first token: requeue it at the front (True) or give up (False)."""
        now = self.clock()
        backend = self._release(req)
        req.last_error = error
        req.backend = None
        if backend is not None:
            backend.mark_failed(now, self.config.backend_cooldown_s, error)
        if len(req.tried) >= self.config.max_attempts or not self._serving(req.model, now, req.tried):
            return False
        req.num_preemptions += 1
        req._future = asyncio.get_running_loop().create_future()
        self._waiting[req.request_id] = req
        self.policy.requeue(req, now)
        self._on_event("retry", req)
        self.pump()
        return True

    def finish(self, req: GatewayRequest, *, itl_s: float | None = None, backend_error: str | None = None) -> None:
        """`req` ended (success, error, client gone, queue timeout): stop charging, free its slot, admit more.

        `backend_error`: its backend failed after the first token; keep traffic away from it for a while.
        """
        if req.is_done:
            return
        now = self.clock()
        if backend_error is not None and req.backend is not None and req.is_running:
            req.backend.mark_failed(now, self.config.backend_cooldown_s, backend_error)
        req.is_done = True
        req.finish_time = now
        if req.request_id in self._waiting:  # never dispatched, or requeued after a failure
            del self._waiting[req.request_id]
            self.policy.abort(req, now)
            if req.first_scheduled_time is not None:  # dispatched before: it was charged
                self.policy.on_finish(req, now)
            self.pump()
            return
        backend = self._release(req)
        if req.first_scheduled_time is not None:
            self.policy.on_finish(req, now)
        if backend is not None and itl_s is not None:
            backend.window.on_sample(now, itl_s=itl_s)
        self.pump()

    def cancel(self, req: GatewayRequest) -> None:
        """The client left (or the queue timed out): same as `finish` without a latency sample."""
        self.finish(req)

    # Accounting --------------------------------------------------------------------------
    def report_usage(self) -> StepReport | None:
        """Hand the tokens streamed since the last call to the policy as one synthesised StepReport."""
        now = self.clock()
        for req in self.running.values():
            self._collect_output(req)
        tenants = set(self._pending_output) | set(self._pending_prompt)
        if not tenants:
            self._last_report_time = now
            return None
        per = {
            t: TenantUsage(num_prefill_tokens=self._pending_prompt.get(t, 0),
                           num_output_tokens=self._pending_output.get(t, 0))
            for t in sorted(tenants)
        }
        self._pending_output.clear()
        self._pending_prompt.clear()
        num_running = len(self.running)
        window = max(1, sum(b.window.limit for b in self.backends))
        report = StepReport(
            step_id=self._step_id, start_time=self._last_report_time,
            duration_s=max(0.0, now - self._last_report_time),
            batch=BatchShape(num_prefill_tokens=sum(u.num_prefill_tokens for u in per.values()),
                             num_prefill_seqs=sum(1 for u in per.values() if u.num_prefill_tokens),
                             num_decode_seqs=num_running),
            limits=BatchLimits(max_num_batched_tokens=window, max_num_seqs=window),
            per_tenant=per, num_kv_blocks_used=0, num_kv_blocks_total=0,
        )
        self._step_id += 1
        self._last_report_time = now
        self.policy.on_step(report)
        return report

    async def report_loop(self) -> None:
        """Call `report_usage` every usage_report_interval_s until cancelled."""
        interval = self.config.usage_report_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.report_usage()
                self.pump()
            except Exception:  # a policy bug must not stop accounting for everyone
                logger.exception("usage report failed")

    # Placement -----------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Every model some backend serves (sorted)."""
        return sorted({m for b in self.backends for m in b.models})

    def _serving(self, model: str, now: float, exclude: Iterable[str] = ()) -> list[Backend]:
        """Healthy backends serving `model`, other than those named in `exclude`."""
        skip = set(exclude)
        return [b for b in self.backends if model in b.models and b.name not in skip and b.is_healthy(now)]

    def _pick(self, model: str, now: float, exclude: Iterable[str] = ()) -> Backend | None:
        """The candidate with window room and the least outstanding work per window slot, or None."""
        best: Backend | None = None
        best_key: tuple[float, int, str] | None = None
        for b in self._serving(model, now, exclude):
            if not b.has_capacity:
                continue
            key = (b.outstanding_tokens / b.window.limit, b.num_in_flight, b.name)
            if best_key is None or key < best_key:
                best, best_key = b, key
        return best

    def num_waiting_of(self, tenant: str) -> int:
        """Requests of `tenant` waiting in the fair queue."""
        return self.policy.num_waiting_of(tenant)

    def num_running_of(self) -> dict[str, int]:
        """Requests in flight per tenant."""
        out: dict[str, int] = {}
        for req in self.running.values():
            out[req.tenant] = out.get(req.tenant, 0) + 1
        return out


def estimate_prompt_tokens(prompt: object, chars_per_token: float) -> int:
    """Prompt length for the policy: exact for token-id lists, text length / chars_per_token otherwise."""
    if isinstance(prompt, list):
        if prompt and all(isinstance(x, int) for x in prompt):
            return len(prompt)
        return sum(estimate_prompt_tokens(p, chars_per_token) for p in prompt)
    if isinstance(prompt, str):
        return max(1, math.ceil(len(prompt.encode("utf-8", "replace")) / chars_per_token))
    return 1


def estimate_chat_tokens(messages: list[object], chars_per_token: float) -> int:
    """Prompt length of chat messages (content text plus a few tokens of template per message)."""
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, list):  # multi-part content: count the text parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        total += 4 + estimate_prompt_tokens(str(content or ""), chars_per_token)
    return max(1, total)
