"""The load generator: open-loop requests to any OpenAI-compatible endpoint, timing every token.

One generator serves `equinox bench` (`run_load`: a workload's requests), the vLLM tests,
calibration and the benchmarks (`run_calls`, through `equinox.integrations.vllm.loadgen`'s
planned requests); every stream is read with `equinox.streaming`.

Each request is sent at its workload arrival time whatever happened to earlier ones
(open loop: a slow server builds a queue, it does not slow the arrivals), streams
its completion, and records when the first and every later token arrived. All loops
are bounded: arrivals stop at `duration_s`, and requests still running at
`duration_s + drain_timeout_s` are cancelled and recorded as unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from equinox.request import RequestSpec
from equinox.streaming import EventReader, StreamError, count_tokens, error_message, finish_reason

logger = logging.getLogger(__name__)

QUEUE_WAIT_HEADER = "x-equinox-queue-wait-s"

# Short common English words: about one token each for BPE tokenizers (prompt length is approximate).
WORDS = (
    "the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "was", "with", "as", "at", "be", "by",
    "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were",
    "all", "we", "her", "she", "there", "would", "their", "will", "when", "who", "him", "been", "has", "more",
)


def synth_prompt(num_tokens: int, salt: int) -> str:
    """A deterministic prompt of roughly `num_tokens` tokens (different salts give different text)."""
    n = len(WORDS)
    return " ".join(WORDS[(salt * 7 + i * 5 + i // n) % n] for i in range(max(1, num_tokens)))


@dataclass(frozen=True)
class BenchRequest:
    """One request to send: the workload spec, the tenant it is sent as, and its API key."""

    spec: RequestSpec
    tenant: str
    key: str | None
    prompt: str


@dataclass
class Outcome:
    """What happened to one request, as the client saw it (times from the load's clock)."""

    request: Any  # what was sent: a BenchRequest for `equinox bench`, the caller's own plan item otherwise
    send_time: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    token_times: list[float] = field(default_factory=list)
    num_output_tokens: int = 0
    num_prompt_tokens: int | None = None  # from the server's usage report
    queue_wait_s: float | None = None  # from the gateway's header, when present
    finish_reason: str | None = None
    status: int = 0
    error: str | None = None

    @property
    def is_ok(self) -> bool:
        """Completed with HTTP 200 and no error."""
        return self.error is None and self.finish_time is not None


@dataclass(frozen=True)
class Call:
    """One HTTP request of a load: when to send it (seconds after the start), where, what, with which key."""

    start_s: float
    path: str
    body: Mapping[str, Any]
    key: str | None = None
    request: Any = None  # carried into the Outcome


@dataclass(frozen=True)
class LoadOptions:
    """How `equinox bench` sends: target, model, limits and request-body extras."""

    target: str
    model: str
    duration_s: float
    drain_timeout_s: float = 60.0
    request_timeout_s: float = 600.0
    max_connections: int = 2048
    ignore_eos: bool = True
    tenant_xargs: bool = False  # also put the tenant in vllm_xargs (vLLM with the plug-in, no gateway)
    endpoint: str = "/v1/completions"


def _body(req: BenchRequest, opts: LoadOptions) -> dict[str, object]:
    body: dict[str, object] = {
        "model": opts.model, "prompt": req.prompt, "max_tokens": req.spec.num_generated_tokens,
        "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0,
    }
    if opts.ignore_eos:
        body["ignore_eos"] = True
    if opts.tenant_xargs:
        body["vllm_xargs"] = {"tenant": req.tenant}
    return body


async def send(client: Any, url: str, body: Mapping[str, Any], key: str | None, clock: Callable[[], float],
               out: Outcome) -> None:
    """POST one completion (streamed or not) and record its status, token times, usage and errors in `out`."""
    import httpx

    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    out.send_time = clock()
    try:
        async with client.stream("POST", url, content=json.dumps(body), headers=headers) as resp:
            out.status = resp.status_code
            wait = resp.headers.get(QUEUE_WAIT_HEADER)
            if wait is not None:
                with contextlib.suppress(ValueError):
                    out.queue_wait_s = float(wait)
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                out.error = f"HTTP {resp.status_code}: {_message(text)}"
                return
            if body.get("stream"):
                await _read_stream(resp, out, clock)
            else:
                _read_whole(json.loads(await resp.aread()), out, clock)
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    except (StreamError, ValueError) as exc:
        out.error = f"bad response: {exc}"


async def _read_stream(resp: Any, out: Outcome, clock: Callable[[], float]) -> None:
    events = EventReader(resp.aiter_lines())
    async for _, event in events:
        message = error_message(event)
        if message is not None:
            out.error = f"error event: {message}"
            return
        now = clock()
        if count_tokens(event):
            if out.first_token_time is None:
                out.first_token_time = now
            out.token_times.append(now)
        out.finish_reason = finish_reason(event) or out.finish_reason
        usage = event.get("usage")
        if usage:
            out.num_prompt_tokens = int(usage.get("prompt_tokens") or 0) or None
            out.num_output_tokens = int(usage.get("completion_tokens") or 0)
    if not events.is_done:
        out.error = "stream ended without [DONE]"
        return
    out.num_output_tokens = max(out.num_output_tokens, len(out.token_times))
    if out.first_token_time is None:  # an empty completion: the end is the first "token"
        out.first_token_time = clock()
    out.finish_time = clock()


def _read_whole(doc: Any, out: Outcome, clock: Callable[[], float]) -> None:
    if not isinstance(doc, dict):
        raise ValueError("the response is not a JSON object")
    choices = doc.get("choices") or [{}]
    out.finish_reason = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
    usage = doc.get("usage") or {}
    out.num_output_tokens = int(usage.get("completion_tokens") or 0)
    out.num_prompt_tokens = int(usage.get("prompt_tokens") or 0) or None
    out.finish_time = out.first_token_time = clock()


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return str(doc["error"].get("message"))[:300]
    except ValueError:
        pass
    return text[:300]


async def run_calls(base_url: str, calls: Sequence[Call], *, clock: Callable[[], float] | None = None,
                    max_connections: int = 2048, request_timeout_s: float = 600.0, deadline_s: float | None = None,
                    on_send: Callable[[Call], Any] | None = None,
                    on_done: Callable[[Outcome], Any] | None = None) -> tuple[list[Outcome], float]:
    """Send every call at its start time, open loop; returns the outcomes (in `calls` order) and the start.

    `clock` (default: seconds since the start) stamps the outcomes. Calls still running
    `deadline_s` after the start are cancelled and recorded as unfinished. `on_send` runs
    in a worker thread just before a call is sent (it may block to hold that call back);
    `on_done` runs on the loop as each call ends.
    """
    import httpx

    outcomes = [Outcome(c.request) for c in calls]
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    timeout = httpx.Timeout(request_timeout_s, connect=10.0, pool=request_timeout_s)
    t0 = time.monotonic()
    stamp = clock or (lambda: time.monotonic() - t0)

    async def one(client: Any, call: Call, out: Outcome) -> None:
        delay = call.start_s - (time.monotonic() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        if on_send is not None:
            await asyncio.to_thread(on_send, call)
        await send(client, base_url + call.path, call.body, call.key, stamp, out)
        if on_done is not None:
            on_done(out)

    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        tasks = [asyncio.create_task(one(client, c, o)) for c, o in zip(calls, outcomes, strict=True)]
        if tasks:
            wait_s = None if deadline_s is None else max(0.0, deadline_s - (time.monotonic() - t0))
            _, pending = await asyncio.wait(tasks, timeout=wait_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10.0)
                logger.warning("%d request(s) still running after the drain timeout were cancelled", len(pending))
    for out in outcomes:
        if out.finish_time is None and out.error is None:
            out.error = "unfinished: still running at the end of the drain timeout"
    return outcomes, t0


async def run_load(requests: Sequence[BenchRequest], opts: LoadOptions,
                   on_progress: Callable[[int, int], None] | None = None) -> tuple[list[Outcome], float]:
    """Send every request with arrival < duration at its arrival time; returns outcomes and the start time."""
    plan = sorted((r for r in requests if r.spec.arrival_time < opts.duration_s),
                  key=lambda r: (r.spec.arrival_time, r.spec.request_id))
    calls = [Call(r.spec.arrival_time, opts.endpoint, _body(r, opts), r.key, r) for r in plan]
    num_done = 0

    def done(_: Outcome) -> None:
        nonlocal num_done
        num_done += 1
        if on_progress is not None:
            on_progress(num_done, len(plan))

    return await run_calls(opts.target, calls, max_connections=opts.max_connections,
                           request_timeout_s=opts.request_timeout_s,
                           deadline_s=opts.duration_s + opts.drain_timeout_s, on_done=done)


async def discover_model(target: str, key: str | None) -> str:
    """The first model the target lists at GET /v1/models."""
    import httpx

    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        resp = await client.get(target + "/v1/models", headers=headers)
        resp.raise_for_status()
        data = resp.json().get("data") or []
        if not data:
            raise ValueError("the target lists no model")
        return str(data[0]["id"])
