"""Planned multi-tenant requests for the vLLM tests, calibration and benchmarks, sent by the one load generator.

Each planned request starts at its offset, streams its completion (or asks for one JSON
document) and records when every token arrived, so time to first token and the service
each tenant received in any time window can be computed afterwards. Sending is
`equinox.bench.loadgen.run_calls` (httpx, `equinox.streaming`); this module only plans
requests and keeps the result shape its callers read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from equinox.bench.loadgen import Call, Outcome, run_calls

# Common words of Python source: about one token each with the tiny test tokenizer.
WORDS = (
    "def", "return", "self", "import", "for", "in", "if", "else", "while", "class", "value", "result",
    "data", "name", "list", "dict", "None", "True", "False", "print", "len", "range", "path", "file",
    "line", "error", "raise", "try", "except", "with", "open", "read", "write", "args", "kwargs", "test",
)


@dataclass(frozen=True)
class PlannedRequest:
    """One request to send: who, when (seconds after the start), what."""

    tenant: str | None
    start_s: float
    prompt: str
    max_tokens: int
    num_prompt_tokens: int = 0  # for service accounting; 0 when unknown
    xargs: dict[str, object] | None = None  # overrides {"tenant": tenant}
    stream: bool = True  # False: one JSON response (cheap for the client; no TTFT)


@dataclass
class RequestResult:
    """What happened to one request, seen from the client."""

    tenant: str | None
    num_prompt_tokens: int
    status: int = 0
    error: str | None = None
    send_time: float = 0.0
    token_times: list[float] = field(default_factory=list)
    finish_time: float = 0.0
    num_output_tokens: int = 0  # from the server's usage report
    finish_reason: str | None = None

    @property
    def is_ok(self) -> bool:
        """True when the request completed with HTTP 200 and no error."""
        return self.status == 200 and self.error is None and self.finish_reason is not None

    @property
    def ttft_s(self) -> float | None:
        """Time to first token, seconds."""
        return self.token_times[0] - self.send_time if self.token_times else None


def _call(req: PlannedRequest, model: str) -> Call:
    xargs = req.xargs if req.xargs is not None else ({"tenant": req.tenant} if req.tenant else None)
    body: dict[str, object] = {
        "model": model, "prompt": req.prompt, "max_tokens": req.max_tokens, "stream": req.stream,
        "ignore_eos": True, "temperature": 0.0,
    }
    if req.stream:
        body["stream_options"] = {"include_usage": True}
    if xargs is not None:
        body["vllm_xargs"] = xargs
    return Call(req.start_s, "/v1/completions", body, None, req)


def _result(out: Outcome) -> RequestResult:
    req: PlannedRequest = out.request
    return RequestResult(
        tenant=req.tenant, num_prompt_tokens=out.num_prompt_tokens or req.num_prompt_tokens, status=out.status,
        error=out.error, send_time=out.send_time or 0.0, token_times=list(out.token_times),
        finish_time=out.finish_time if out.finish_time is not None else time.monotonic(),
        num_output_tokens=out.num_output_tokens, finish_reason=out.finish_reason,
    )


def send_completion(base_url: str, model: str, req: PlannedRequest, timeout_s: float = 300.0) -> RequestResult:
    """Send one /v1/completions request now; when streamed, record its tokens' arrival times."""
    return run_plan(base_url, model, [PlannedRequest(req.tenant, 0.0, req.prompt, req.max_tokens,
                                                     req.num_prompt_tokens, req.xargs, req.stream)], timeout_s)[0]


def run_plan(
    base_url: str, model: str, plan: Sequence[PlannedRequest], timeout_s: float = 300.0,
    on_result: Callable[[RequestResult], None] | None = None,
    on_send: Callable[[PlannedRequest], None] | None = None,
) -> list[RequestResult]:
    """Send every planned request at its offset with the one load generator; results in plan order.

    Times are `time.monotonic()` values. `on_send` is called (in a worker thread, so it may
    block to hold the request back) just before each request is sent, `on_result` as soon
    as it ends.
    """
    calls = [_call(r, model) for r in plan]
    outcomes, _ = asyncio.run(run_calls(
        base_url.rstrip("/"), calls, clock=time.monotonic, max_connections=max(1, len(calls)),
        request_timeout_s=timeout_s, deadline_s=max((r.start_s for r in plan), default=0.0) + timeout_s + 60,
        on_send=None if on_send is None else (lambda call: on_send(call.request)),
        on_done=None if on_result is None else (lambda out: on_result(_result(out)))))
    return [_result(o) for o in outcomes]


@dataclass(frozen=True)
class TenantSummary:
    """Per-tenant figures of one run."""

    tenant: str
    num_requests: int
    num_ok: int
    mean_ttft_s: float
    max_ttft_s: float
    share_of_service: float  # tokens served to the tenant / all tokens served, in the contention window


def service_in_window(results: Iterable[RequestResult], start: float, end: float) -> dict[str, float]:
    """Tokens served per tenant in [start, end]: output tokens as they arrived, prompt at first token."""
    served: dict[str, float] = {}
    for r in results:
        key = r.tenant or "(none)"
        n = sum(1 for t in r.token_times if start <= t <= end)
        if r.token_times and start <= r.token_times[0] <= end:
            n += r.num_prompt_tokens
        served[key] = served.get(key, 0.0) + n
    return served


def summarize(results: Sequence[RequestResult], focus_tenant: str) -> dict[str, TenantSummary]:
    """Per-tenant TTFT and share of service while `focus_tenant` had requests outstanding."""
    focus = [r for r in results if r.tenant == focus_tenant]
    start = min((r.send_time for r in focus), default=0.0)
    end = max((r.finish_time for r in focus), default=0.0)
    served = service_in_window(results, start, end)
    total = sum(served.values()) or 1.0
    out: dict[str, TenantSummary] = {}
    for tenant in sorted({r.tenant or "(none)" for r in results}):
        mine = [r for r in results if (r.tenant or "(none)") == tenant]
        ttfts = [r.ttft_s for r in mine if r.ttft_s is not None]
        out[tenant] = TenantSummary(
            tenant=tenant, num_requests=len(mine), num_ok=sum(r.is_ok for r in mine),
            mean_ttft_s=sum(ttfts) / len(ttfts) if ttfts else float("nan"),
            max_ttft_s=max(ttfts, default=float("nan")),
            share_of_service=served.get(tenant, 0.0) / total,
        )
    return out


def flood_plan(num_heavy: int, num_light: int, light_start_s: float, prompt_words: int, max_tokens: int,
               heavy: str = "heavy", light: str = "light", jitter_tokens: int = 0) -> list[PlannedRequest]:
    """One tenant floods at t=0 (not streamed), another streams a few requests a little later.

    `jitter_tokens` spreads the heavy requests' lengths over max_tokens ± 4 * jitter_tokens
    (offsets -4..-1, 1..4, summing to zero every 8 requests), so running requests finish
    and free their slots at different steps, not in waves.
    """
    def prompt(i: int, who: str) -> str:
        offset = 7 * i + (0 if who == "h" else 3)
        return " ".join(WORDS[(offset + 5 * j) % len(WORDS)] for j in range(prompt_words))

    def offset(i: int) -> int:
        k = i % 8 - 4
        return k + 1 if k >= 0 else k

    plan = [PlannedRequest(heavy, 0.0, prompt(i, "h"), max_tokens + jitter_tokens * offset(i), stream=False)
            for i in range(num_heavy)]
    plan += [PlannedRequest(light, light_start_s + 0.05 * i, prompt(i, "l"), max_tokens) for i in range(num_light)]
    return plan
