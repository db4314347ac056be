"""A small multi-tenant load generator for an OpenAI-compatible server (stdlib only).

Each planned request runs in its own thread, starts at its offset, streams its
completion and records when every token arrived, so time to first token and the
service each tenant received in any time window can be computed afterwards.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

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


def send_completion(base_url: str, model: str, req: PlannedRequest, timeout_s: float = 300.0) -> RequestResult:
    """Send one /v1/completions request; when streamed, record its tokens' arrival times."""
    url = urllib.parse.urlsplit(base_url)
    xargs = req.xargs if req.xargs is not None else ({"tenant": req.tenant} if req.tenant else None)
    body: dict[str, object] = {
        "model": model, "prompt": req.prompt, "max_tokens": req.max_tokens, "stream": req.stream,
        "ignore_eos": True, "temperature": 0.0,
    }
    if req.stream:
        body["stream_options"] = {"include_usage": True}
    if xargs is not None:
        body["vllm_xargs"] = xargs
    result = RequestResult(tenant=req.tenant, num_prompt_tokens=req.num_prompt_tokens)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=timeout_s)
    try:
        result.send_time = time.monotonic()
        conn.request("POST", "/v1/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        result.status = resp.status
        if resp.status != 200:
            result.error = resp.read().decode(errors="replace")[:500]
            return result
        if req.stream:
            _read_stream(resp, result)
        else:
            _read_whole(resp, result)
    except (OSError, http.client.HTTPException) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.finish_time = time.monotonic()
        conn.close()
    return result


def _read_whole(resp: http.client.HTTPResponse, result: RequestResult) -> None:
    doc = json.loads(resp.read())
    choices = doc.get("choices") or [{}]
    result.finish_reason = choices[0].get("finish_reason")
    usage = doc.get("usage") or {}
    result.num_output_tokens = int(usage.get("completion_tokens", 0))
    result.num_prompt_tokens = int(usage.get("prompt_tokens", result.num_prompt_tokens))


def _read_stream(resp: http.client.HTTPResponse, result: RequestResult) -> None:
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        event = json.loads(data)
        if "error" in event:
            result.error = str(event["error"])[:500]
            break
        now = time.monotonic()
        for choice in event.get("choices") or ():
            if choice.get("text"):
                result.token_times.append(now)
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
        usage = event.get("usage")
        if usage:
            result.num_output_tokens = int(usage.get("completion_tokens", 0))
            result.num_prompt_tokens = int(usage.get("prompt_tokens", result.num_prompt_tokens))


def run_plan(
    base_url: str, model: str, plan: Sequence[PlannedRequest], timeout_s: float = 300.0,
    on_result: Callable[[RequestResult], None] | None = None,
    on_send: Callable[[PlannedRequest], None] | None = None,
) -> list[RequestResult]:
    """Send every planned request at its offset (one thread each); results in plan order.

    `on_send` is called (from the request's thread) just before each request is sent,
    `on_result` as soon as it ends.
    """
    results: list[RequestResult | None] = [None] * len(plan)
    t0 = time.monotonic()

    def worker(i: int, req: PlannedRequest) -> None:
        delay = t0 + req.start_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if on_send is not None:
            on_send(req)
        result = results[i] = send_completion(base_url, model, req, timeout_s)
        if on_result is not None:
            on_result(result)

    threads = [threading.Thread(target=worker, args=(i, r), daemon=True) for i, r in enumerate(plan)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 60)
    return [r if r is not None else RequestResult(tenant=p.tenant, num_prompt_tokens=p.num_prompt_tokens,
                                                  error="did not finish") for r, p in zip(results, plan, strict=True)]


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
