"""One Serve replica's fair queue and its engine (issue 14 item 1); no Ray import, so tests drive it directly.

`FairQueue` is an Equinox policy's waiting queue in front of an engine that runs at most
`max_running` requests at once: a request is added to the policy when it reaches the
replica and starts when the policy puts it at the head and a slot is free (heads are never
skipped, as in the gateway). Accounting follows the gateway's admission (issue 9): every
`report_usage` call hands the policy one synthesised StepReport with the output tokens
each tenant received since the last call and the prompts whose first token arrived.

Engines stream OpenAI chunks (dicts): `FakeEngine` in-process (tests, benchmarks: one
token per `itl_s` after `ttft_s`), `OpenAIEngine` forwarding to a vLLM OpenAI server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from equinox.scheduling.interface import Policy
from equinox.streaming import count_tokens, error_message
from equinox.types import BatchLimits, BatchShape, StepReport, TenantUsage


class QueueRejected(Exception):
    """The replica will not queue the request (tenant or replica queue full, or the policy refused it)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class EngineFailure(Exception):
    """The engine failed a request (connection, HTTP error or an error event)."""


@dataclass(eq=False)
class QueuedRequest:
    """One request on a replica; also the RequestView its policy reads."""

    request_id: str
    tenant: str
    arrival_time: float
    num_prompt_tokens: int
    max_tokens: int | None
    num_computed_tokens: int = 0
    num_output_tokens_done: int = 0
    num_preemptions: int = 0
    admit_seq: int = -1
    is_running: bool = False
    is_done: bool = False
    _started: asyncio.Future[None] | None = field(default=None, repr=False)
    _num_output_reported: int = 0


class FairQueue:
    """The policy's waiting queue in front of an engine with `max_running` slots (see the module docstring)."""

    def __init__(self, policy: Policy, max_running: int, clock: Callable[[], float], *,
                 max_queue_of: Mapping[str, int] | None = None, max_queue_total: int = 4096) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        self.policy = policy
        self.max_running = max_running
        self.clock = clock
        self.max_queue_of = dict(max_queue_of or {})
        self.max_queue_total = max_queue_total
        self._waiting: dict[str, QueuedRequest] = {}
        self.running: dict[str, QueuedRequest] = {}
        self._seq = itertools.count()
        self._pending_prompt: dict[str, int] = {}
        self._pending_output: dict[str, int] = {}
        self._step_id = 0
        self._last_report_time = clock()

    async def admit(self, req: QueuedRequest) -> None:
        """Queue `req` and wait until it may start (QueueRejected when it may not queue at all)."""
        limit = self.max_queue_of.get(req.tenant)
        if limit is not None and self.policy.num_waiting_of(req.tenant) >= limit:
            raise QueueRejected(429, f"tenant {req.tenant!r} has {limit} requests queued on this replica "
                                "(its max_queue); retry later", "queue_full")
        if self.policy.num_waiting >= self.max_queue_total:
            raise QueueRejected(429, f"the replica queue is full ({self.max_queue_total} requests); retry later",
                                "queue_full")
        reason = self.policy.add_request(req, req.arrival_time)
        if reason is not None:
            raise QueueRejected(429, reason, "rate_limit")
        req._started = asyncio.get_running_loop().create_future()
        self._waiting[req.request_id] = req
        self.pump()
        try:
            await asyncio.shield(req._started)
        except asyncio.CancelledError:
            self.finish(req)  # the caller left while waiting (or running): release it
            raise

    def pump(self) -> None:
        """Start head requests while slots are free."""
        now = self.clock()
        while len(self.running) < self.max_running and self.policy.num_waiting:
            view = self.policy.peek(now)
            if view is None:
                return
            self.policy.pop(view, now)
            req = self._waiting.pop(view.request_id)
            req.admit_seq = next(self._seq)
            req.is_running = True
            self.running[req.request_id] = req
            if req._started is not None and not req._started.done():
                req._started.set_result(None)

    def on_first_token(self, req: QueuedRequest) -> None:
        """The engine's first token for `req`: its prompt was processed (charged at the next report)."""
        self.policy.on_first_token(req, self.clock())
        req.num_computed_tokens += req.num_prompt_tokens
        self._pending_prompt[req.tenant] = self._pending_prompt.get(req.tenant, 0) + req.num_prompt_tokens

    def add_output(self, req: QueuedRequest, num_tokens: int) -> None:
        """`num_tokens` more output tokens were streamed for `req`."""
        if num_tokens > 0 and not req.is_done:
            req.num_output_tokens_done += num_tokens
            req.num_computed_tokens += num_tokens

    def finish(self, req: QueuedRequest) -> None:
        """`req` ended (done, failed or abandoned): free its slot or take it out of the queue."""
        if req.is_done:
            return
        now = self.clock()
        if req.request_id in self._waiting:
            del self._waiting[req.request_id]
            self.policy.abort(req, now)
        elif self.running.pop(req.request_id, None) is not None:
            self._collect(req)
            self.policy.on_finish(req, now)
        req.is_done = True
        self.pump()

    def _collect(self, req: QueuedRequest) -> None:
        grown = req.num_output_tokens_done - req._num_output_reported
        if grown > 0:
            self._pending_output[req.tenant] = self._pending_output.get(req.tenant, 0) + grown
            req._num_output_reported = req.num_output_tokens_done

    def report_usage(self) -> StepReport | None:
        """Hand the tokens streamed since the last call to the policy as one StepReport (None: nothing new)."""
        now = self.clock()
        for req in self.running.values():
            self._collect(req)
        tenants = sorted(set(self._pending_output) | set(self._pending_prompt))
        if not tenants:
            self._last_report_time = now
            return None
        per = {t: TenantUsage(num_prefill_tokens=self._pending_prompt.get(t, 0),
                              num_output_tokens=self._pending_output.get(t, 0)) for t in tenants}
        self._pending_output.clear()
        self._pending_prompt.clear()
        report = StepReport(
            step_id=self._step_id, start_time=self._last_report_time, duration_s=max(0.0, now - self._last_report_time),
            batch=BatchShape(num_prefill_tokens=sum(u.num_prefill_tokens for u in per.values()),
                             num_prefill_seqs=sum(1 for u in per.values() if u.num_prefill_tokens),
                             num_decode_seqs=len(self.running)),
            limits=BatchLimits(max_num_batched_tokens=self.max_running, max_num_seqs=self.max_running),
            per_tenant=per, num_kv_blocks_used=0, num_kv_blocks_total=0,
        )
        self._step_id += 1
        self._last_report_time = now
        self.policy.on_step(report)
        self.pump()
        return report

    def stats(self) -> dict[str, Any]:
        """What the request router reads: queue and slots, per-tenant waiting counts, the policy's counters."""
        waiting: dict[str, int] = {}
        for req in self._waiting.values():
            waiting[req.tenant] = waiting.get(req.tenant, 0) + 1
        running: dict[str, int] = {}
        for req in self.running.values():
            running[req.tenant] = running.get(req.tenant, 0) + 1
        return {"num_waiting": len(self._waiting), "num_running": len(self.running), "max_running": self.max_running,
                "waiting_by_tenant": waiting, "running_by_tenant": running,
                "counters": {t: float(v) for t, v in self.policy.counters().items()}}


class Engine(Protocol):
    """What a replica forwards a started request to: an async stream of OpenAI chunks."""

    def stream(self, path: str, body: dict[str, Any], request_id: str) -> AsyncIterator[dict[str, Any]]:
        """The response chunks of one request (EngineFailure on errors)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass
class FakeEngine:
    """An in-process engine: `max_tokens` one-token chunks after `ttft_s`, `itl_s` apart, then usage."""

    model: str = "fake-model"
    ttft_s: float = 0.01
    itl_s: float = 0.005

    async def stream(self, path: str, body: dict[str, Any], request_id: str) -> AsyncIterator[dict[str, Any]]:
        """Stream like vLLM with `stream_options.include_usage`."""
        is_chat = path.endswith("/chat/completions")
        num = int(body.get("max_tokens") or 16)
        created = int(time.time())
        kind = "chat.completion.chunk" if is_chat else "text_completion"
        await asyncio.sleep(self.ttft_s)
        for i in range(num):
            if i:
                await asyncio.sleep(self.itl_s)
            last = i == num - 1
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
            if is_chat:
                choice["delta"] = {"content": "x "} if i else {"role": "assistant", "content": "x "}
            else:
                choice["text"] = "x "
            yield {"id": request_id, "object": kind, "created": created, "model": self.model, "choices": [choice]}
        prompt = body.get("prompt") or body.get("messages") or ""
        num_prompt = max(1, len(json.dumps(prompt)) // 4)
        yield {"id": request_id, "object": kind, "created": created, "model": self.model, "choices": [],
               "usage": {"prompt_tokens": num_prompt, "completion_tokens": num,
                         "total_tokens": num_prompt + num}}

    async def close(self) -> None:
        """Nothing to release."""


class OpenAIEngine:
    """Forwards to one OpenAI-compatible server (a vLLM replica), streaming."""

    def __init__(self, url: str, *, api_key: str | None = None, connect_timeout_s: float = 5.0,
                 stall_timeout_s: float = 60.0, transport: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.api_key = api_key
        self.stall_timeout_s = stall_timeout_s
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(stall_timeout_s, connect=connect_timeout_s),
                                         transport=transport)  # transport: tests (an ASGI app in-process)

    async def stream(self, path: str, body: dict[str, Any], request_id: str) -> AsyncIterator[dict[str, Any]]:
        """POST `body` to `url + path` and yield its chunks."""
        import httpx

        from equinox.streaming import EventReader, StreamError

        headers = {"content-type": "application/json", "x-request-id": request_id}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        try:
            async with self._client.stream("POST", self.url + path, content=json.dumps(body),
                                           headers=headers) as response:
                if response.status_code != 200:
                    text = (await response.aread())[:300].decode(errors="replace")
                    raise EngineFailure(f"engine {self.url} answered HTTP {response.status_code}: {text}")
                async for _raw, chunk in EventReader(response.aiter_lines()):
                    message = error_message(chunk)
                    if message is not None:
                        raise EngineFailure(f"engine {self.url} error event: {message[:200]}")
                    yield chunk
        except httpx.HTTPError as exc:
            raise EngineFailure(f"engine {self.url}: {type(exc).__name__}: {exc or 'stream broken'}") from None
        except StreamError as exc:
            raise EngineFailure(f"engine {self.url}: {exc}") from None

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


async def serve_one(queue: FairQueue, engine: Engine, req: QueuedRequest, path: str,
                    body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Queue `req`, run it on `engine` once started, yield its chunks, and always settle its accounting."""
    await queue.admit(req)
    try:
        is_first = True
        async for chunk in engine.stream(path, body, req.request_id):
            num = count_tokens(chunk)
            if num and is_first:
                queue.on_first_token(req)
                is_first = False
            queue.add_output(req, num)
            yield chunk
    finally:
        queue.finish(req)
