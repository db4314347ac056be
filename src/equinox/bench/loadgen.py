"""Open-loop multi-tenant load against any OpenAI-compatible endpoint, measuring every token's arrival.

Each request is sent at its workload arrival time whatever happened to earlier ones
(open loop: a slow server builds a queue, it does not slow the arrivals), streams
its completion, and records when the first and every later token arrived. All loops
are bounded: arrivals stop at `duration_s`, and requests still running at
`duration_s + drain_timeout_s` are cancelled and recorded as unfinished.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from equinox.request import RequestSpec

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
    """What happened to one request, as the client saw it (times in seconds from the run's start)."""

    request: BenchRequest
    send_time: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    token_times: list[float] = field(default_factory=list)
    num_output_tokens: int = 0
    num_prompt_tokens: int | None = None  # from the server's usage report
    queue_wait_s: float | None = None  # from the gateway's header, when present
    status: int = 0
    error: str | None = None

    @property
    def is_ok(self) -> bool:
        """Completed with HTTP 200 and no error event."""
        return self.error is None and self.finish_time is not None


@dataclass(frozen=True)
class LoadOptions:
    """How to send: target, model, limits and request-body extras."""

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


async def _send_one(client: object, req: BenchRequest, opts: LoadOptions, t0: float, out: Outcome) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    headers = {"content-type": "application/json"}
    if req.key:
        headers["authorization"] = f"Bearer {req.key}"
    out.send_time = time.monotonic() - t0
    try:
        async with client.stream("POST", opts.target + opts.endpoint, content=json.dumps(_body(req, opts)),
                                 headers=headers) as resp:
            out.status = resp.status_code
            wait = resp.headers.get(QUEUE_WAIT_HEADER)
            if wait is not None:
                try:
                    out.queue_wait_s = float(wait)
                except ValueError:
                    pass
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                out.error = f"HTTP {resp.status_code}: {_message(text)}"
                return
            await _read_stream(resp, out, t0)
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"


async def _read_stream(resp: object, out: Outcome, t0: float) -> None:
    is_done = False
    async for line in resp.aiter_lines():  # type: ignore[attr-defined]
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            is_done = True
            break
        chunk = json.loads(data)
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            out.error = f"error event: {err.get('message') if isinstance(err, dict) else err}"
            return
        now = time.monotonic() - t0
        for choice in chunk.get("choices") or ():
            if choice.get("text") or (choice.get("delta") or {}).get("content"):
                if out.first_token_time is None:
                    out.first_token_time = now
                out.token_times.append(now)
        usage = chunk.get("usage")
        if usage:
            out.num_prompt_tokens = int(usage.get("prompt_tokens") or 0) or None
            out.num_output_tokens = int(usage.get("completion_tokens") or 0)
    if not is_done:
        out.error = "stream ended without [DONE]"
        return
    out.num_output_tokens = max(out.num_output_tokens, len(out.token_times))
    if out.first_token_time is None:  # an empty completion: the end is the first "token"
        out.first_token_time = time.monotonic() - t0
    out.finish_time = time.monotonic() - t0


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return str(doc["error"].get("message"))[:300]
    except ValueError:
        pass
    return text[:300]


async def run_load(requests: Sequence[BenchRequest], opts: LoadOptions,
                   on_progress: Callable[[int, int], None] | None = None) -> tuple[list[Outcome], float]:
    """Send every request with arrival < duration at its arrival time; returns outcomes and the start time."""
    import httpx

    plan = sorted((r for r in requests if r.spec.arrival_time < opts.duration_s),
                  key=lambda r: (r.spec.arrival_time, r.spec.request_id))
    outcomes = [Outcome(r) for r in plan]
    limits = httpx.Limits(max_connections=opts.max_connections, max_keepalive_connections=opts.max_connections)
    timeout = httpx.Timeout(opts.request_timeout_s, connect=10.0, pool=opts.request_timeout_s)
    tasks: list[asyncio.Task[None]] = []
    num_done = 0

    def done(_: object) -> None:
        nonlocal num_done
        num_done += 1
        if on_progress is not None:
            on_progress(num_done, len(plan))

    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        t0 = time.monotonic()
        for req, out in zip(plan, outcomes, strict=True):
            delay = req.spec.arrival_time - (time.monotonic() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(_send_one(client, req, opts, t0, out))
            task.add_done_callback(done)
            tasks.append(task)
        deadline = opts.duration_s + opts.drain_timeout_s - (time.monotonic() - t0)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10.0)
                logger.warning("%d request(s) still running after the drain timeout were cancelled", len(pending))
    for out in outcomes:
        if out.finish_time is None and out.error is None:
            out.error = "unfinished: still running at the end of the drain timeout"
    return outcomes, t0


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
