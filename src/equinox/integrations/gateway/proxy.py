"""The /v1/completions and /v1/chat/completions handler: authenticate, validate, queue fairly, forward.

Every accepted request ends in exactly one of: a complete response, an HTTP error
(before any byte was sent), or an SSE error event followed by `[DONE]` (after the
stream started). Backend failures before the first token move the request to another
backend; a client that leaves cancels the work at once, which closes the upstream
connection (the engine aborts the request) and stops charging the tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from equinox.integrations.gateway.admission import (
    GatewayError,
    GatewayRequest,
    estimate_chat_tokens,
    estimate_prompt_tokens,
)
from equinox.integrations.gateway.config import TenantConfig, bearer_key
from equinox.integrations.gateway.openai_format import (
    Aggregator,
    error_body,
    is_usage_only,
    output_limit,
    parse_body,
    sse,
    upstream_body,
    wants_usage_chunk,
)
from equinox.integrations.gateway.runtime import GatewayState
from equinox.integrations.gateway.upstream import Upstream, UpstreamFailure, UpstreamRejected
from equinox.streaming import count_tokens

logger = logging.getLogger(__name__)

QUEUE_WAIT_HEADER = "x-equinox-queue-wait-s"  # seconds the request waited in the gateway's fair queue

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _ClientGone(Exception):
    """The client disconnected while the request body was being read."""


class _BackendLost(GatewayError):
    """The backend failed after the first token (502); `reason` is passed on to mark it failed."""

    def __init__(self, backend_name: str, reason: str) -> None:
        super().__init__(502, f"backend {backend_name} failed after the first token: {reason}", kind="backend_error")
        self.reason = reason


@dataclass
class _Prepared:
    """A validated request, ready to queue."""

    req: GatewayRequest
    tenant: TenantConfig
    payload: dict[str, Any]
    is_stream: bool


async def read_body(receive: Receive, max_bytes: int, timeout_s: float) -> bytes:
    """The whole request body; GatewayError 413 past `max_bytes`, 408 when it takes longer than `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(receive, max_bytes)
    except TimeoutError:
        raise GatewayError(408, f"the request body did not arrive within body_timeout_s={timeout_s:g} s",
                           kind="timeout") from None


async def _read_body(receive: Receive, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise GatewayError(413, f"request body is larger than max_body_bytes={max_bytes}", kind="too_large")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete JSON response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, err: GatewayError, *, close: bool = False) -> None:
    """An OpenAI-style error response (with Retry-After / WWW-Authenticate where they apply).

    `close`: the request body was not read (or the gateway is stopping): end the connection after it.
    """
    extra: list[tuple[bytes, bytes]] = [(b"connection", b"close")] if close else []
    if err.retry_after_s is not None:
        extra.append((b"retry-after", str(err.retry_after_s).encode()))
    if err.status == 401:
        extra.append((b"www-authenticate", b"Bearer"))
    await send_json(send, err.status, error_body(err.status, err.message, err.kind), extra)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class GenerationHandler:
    """ASGI app for one generation endpoint (`is_chat` picks chat or text completions)."""

    def __init__(self, state: GatewayState, *, is_chat: bool) -> None:
        self.state = state
        self.is_chat = is_chat
        self.path = "/v1/chat/completions" if is_chat else "/v1/completions"

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        st = self.state
        arrival = st.clock()
        tenant_name = "(unauthenticated)"
        is_body_read = False
        try:
            # The key is checked before the body is read: a client without one cannot hold the
            # connection by trickling a body (issue #12).
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            tenant = st.auth.tenant_of(bearer_key(headers))
            if tenant is None:
                raise GatewayError(401, "invalid or missing API key: send `Authorization: Bearer <key>`",
                                   kind="authentication_error")
            tenant_name = tenant.name
            body = await read_body(receive, st.config.max_body_bytes, st.config.body_timeout_s)
            is_body_read = True
            if st.is_draining:
                raise GatewayError(503, "the gateway is shutting down; retry the request", kind="shutting_down",
                                   retry_after_s=st.config.retry_after_s)
            prepared = self._prepare(tenant, body, arrival)
            st.admission.submit(prepared.req)
        except _ClientGone:
            return
        except GatewayError as err:
            st.metrics.rejections.labels(tenant_name, err.kind).inc()
            await send_error(send, err, close=not is_body_read or st.is_draining)
            return
        await self._run(prepared, receive, send)

    async def _run(self, prepared: _Prepared, receive: Receive, send: Send) -> None:
        """Serve an accepted request while watching for the client to leave."""
        finished = asyncio.Event()

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished.set()
            await send(message)

        work = asyncio.ensure_future(self._serve(prepared, tracked_send))
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        self.state.active[work] = prepared.req
        work.add_done_callback(lambda task: self.state.active.pop(task, None))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and not finished.is_set():
                work.cancel()  # the client left: abort upstream, stop charging
                self.state.metrics.disconnects.labels(prepared.req.tenant).inc()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()

    def _prepare(self, tenant: TenantConfig, body: bytes, arrival: float) -> _Prepared:
        """Validate the body and build the request; GatewayError 400/404/503 on problems."""
        st = self.state
        payload = parse_body(body, st.config.max_json_depth)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise GatewayError(400, "field 'model' is required (a model name from GET /v1/models)",
                               kind="invalid_request_error")
        models = st.admission.models()
        if not models:
            raise GatewayError(503, "no backend is reachable yet, so no model is being served; retry later",
                               kind="no_backend", retry_after_s=st.config.retry_after_s)
        if model not in models:
            raise GatewayError(404, f"model {model!r} does not exist; served: {', '.join(models)}",
                               kind="model_not_found")
        is_stream = payload.get("stream", False)
        if not isinstance(is_stream, bool):
            raise GatewayError(400, "field 'stream' must be true or false", kind="invalid_request_error")
        if self.is_chat:
            messages = payload.get("messages")
            if not isinstance(messages, list) or not messages:
                raise GatewayError(400, "field 'messages' must be a non-empty list", kind="invalid_request_error")
            num_prompt = estimate_chat_tokens(messages, st.config.chars_per_token)
        else:
            prompt = payload.get("prompt")
            if not isinstance(prompt, (str, list)) or not prompt:
                raise GatewayError(400, "field 'prompt' must be a non-empty string or list",
                                   kind="invalid_request_error")
            num_prompt = estimate_prompt_tokens(prompt, st.config.chars_per_token)
        max_tokens = self._max_tokens(payload, tenant)
        req = GatewayRequest(
            request_id=f"eqx-{next(st.request_ids)}", tenant=tenant.name, arrival_time=arrival,
            num_prompt_tokens=num_prompt, max_tokens=max_tokens, model=model,
        )
        return _Prepared(req, tenant, payload, is_stream)

    def _max_tokens(self, payload: dict[str, Any], tenant: TenantConfig) -> int:
        try:
            return output_limit(payload, tenant.max_tokens, is_chat=self.is_chat)
        except ValueError as exc:
            raise GatewayError(400, str(exc), kind="invalid_request_error") from None

    # Serving ----------------------------------------------------------------------------
    async def _serve(self, prepared: _Prepared, send: Send) -> None:
        """Dispatch, stream or aggregate, and always settle the request's accounting."""
        st = self.state
        req = prepared.req
        outcome = "error"
        upstream: Upstream | None = None
        started = False
        itl_s: float | None = None
        backend_error: str | None = None
        try:
            upstream, raw, chunk = await self._until_first_token(prepared)
            if prepared.is_stream:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"), *_info_headers(req)]})
                started = True
            itl_s = await self._relay(prepared, upstream, raw, chunk, send)
            outcome = "ok"
        except GatewayError as err:
            outcome = err.kind
            if isinstance(err, _BackendLost):
                backend_error = err.reason
            st.metrics.rejections.labels(req.tenant, err.kind).inc()
            if started:
                await send({"type": "http.response.body", "body": sse(error_body(err.status, err.message, err.kind)),
                            "more_body": True})
                await send({"type": "http.response.body", "body": sse("[DONE]")})
            else:
                await send_error(send, err)
        except asyncio.CancelledError:
            if req.request_id not in st.drained:
                outcome = "client_disconnect"
                raise
            # the drain time is over: end the request explicitly, as for a backend failure
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            outcome = "shutting_down"
            stop = GatewayError(503, "the gateway is shutting down and its drain time is over; the response is "
                                "incomplete, retry the request", kind="shutting_down")
            if started:
                await send({"type": "http.response.body",
                            "body": sse(error_body(stop.status, stop.message, stop.kind)) + sse("[DONE]")})
            else:
                await send_error(send, stop, close=True)
        except Exception as exc:  # a bug must still end the request explicitly
            logger.exception("request %s failed", req.request_id)
            outcome = "internal_error"
            internal = GatewayError(500, f"internal gateway error: {type(exc).__name__}", kind="internal_error")
            if not started:
                await send_error(send, internal)
            else:
                payload = sse(error_body(500, internal.message, "internal_error")) + sse("[DONE]")
                await send({"type": "http.response.body", "body": payload})
        finally:
            if upstream is not None:
                await upstream.close()
            st.admission.finish(req, itl_s=itl_s, backend_error=backend_error)
            st.metrics.requests.labels(req.tenant, outcome).inc()
            if outcome == "ok" and req.finish_time is not None:
                st.metrics.e2e.labels(req.tenant).observe(req.finish_time - req.arrival_time)

    async def _until_first_token(self, prepared: _Prepared) -> tuple[Upstream, str, dict[str, Any]]:
        """Dispatch and open upstream until a first token arrives, moving to other backends on failure."""
        st = self.state
        req = prepared.req
        cfg = st.config
        while True:
            backend = await st.admission.wait_dispatch(req)
            if req.num_preemptions == 0 and req.first_scheduled_time is not None:
                st.metrics.queue_wait.labels(req.tenant).observe(req.first_scheduled_time - req.arrival_time)
            body = upstream_body(prepared.payload, req.tenant, cfg.tenant_key, is_vllm=backend.config.is_vllm)
            upstream = Upstream(st.client, backend, self.path, body, req.request_id)
            sent = st.clock()
            try:
                await upstream.open(cfg.first_token_timeout_s)
                left = max(0.01, cfg.first_token_timeout_s - (st.clock() - sent))
                first = await upstream.next_chunk(left)
                if first is None:
                    raise UpstreamFailure("stream ended before the first token")
            except UpstreamRejected as rej:
                await upstream.close()
                raise GatewayError(rej.status, _upstream_message(rej.body), kind="upstream_rejected") from None
            except (UpstreamFailure, asyncio.CancelledError) as exc:
                await upstream.close()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                st.metrics.retries.labels(backend.name).inc()
                if st.admission.retry(req, str(exc)):
                    logger.info("request %s: backend %s failed before the first token (%s); retrying",
                                req.request_id, backend.name, exc)
                    continue
                raise GatewayError(502, f"backend {backend.name} failed before the first token ({exc}) and no "
                                   "other backend could take the request", kind="backend_error") from None
            st.admission.on_first_token(req, st.clock() - sent)
            if req.first_token_time is not None:
                st.metrics.ttft.labels(req.tenant).observe(req.first_token_time - req.arrival_time)
            return upstream, first[0], first[1]

    async def _relay(self, prepared: _Prepared, upstream: Upstream, raw: str, chunk: dict[str, Any],
                     send: Send) -> float | None:
        """Forward (stream) or fold (non-stream) every chunk; returns the mean inter-token latency."""
        st = self.state
        req = prepared.req
        keep_usage = wants_usage_chunk(prepared.payload)
        agg = None if prepared.is_stream else Aggregator(self.is_chat)
        usage: dict[str, Any] | None = None
        num_counted = 0
        last_token_time = first_time = st.clock()
        current: tuple[str, dict[str, Any]] | None = (raw, chunk)
        while current is not None:
            raw, chunk = current
            n = count_tokens(chunk)
            if n:
                num_counted += n
                req.add_output(n)
                st.metrics.output_tokens.labels(req.tenant).inc(n)
                last_token_time = st.clock()
            if chunk.get("usage"):
                usage = chunk["usage"]
            if agg is not None:
                agg.add(chunk)
            elif keep_usage or not is_usage_only(chunk):
                await send({"type": "http.response.body", "body": sse(raw), "more_body": True})
            try:
                current = await upstream.next_chunk()
            except UpstreamFailure as exc:
                raise _BackendLost(upstream.backend.name, str(exc)) from None
        if usage:
            extra = int(usage.get("completion_tokens") or 0) - num_counted
            if extra > 0:  # chunks carrying several tokens: charge the rest now
                req.add_output(extra)
                st.metrics.output_tokens.labels(req.tenant).inc(extra)
            st.metrics.prompt_tokens.labels(req.tenant).inc(int(usage.get("prompt_tokens") or 0))
        if agg is not None:
            await send_json(send, 200, json.dumps(agg.response()).encode(), _info_headers(req))
        else:
            await send({"type": "http.response.body", "body": sse("[DONE]")})
        total = req.num_output_tokens_done
        return (last_token_time - first_time) / (total - 1) if total > 1 else None


def _info_headers(req: GatewayRequest) -> list[tuple[bytes, bytes]]:
    """Response headers telling the client its request id and how long it waited in the fair queue."""
    wait = 0.0 if req.first_scheduled_time is None else req.first_scheduled_time - req.arrival_time
    return [(b"x-request-id", req.request_id.encode()), (QUEUE_WAIT_HEADER.encode(), f"{wait:.6f}".encode())]


def _upstream_message(body: bytes) -> str:
    """The message of a backend's error body (OpenAI or FastAPI shape), else its text."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:500].decode(errors="replace") or "backend rejected the request"
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(doc.get("message"), str):
            return doc["message"]
        if "detail" in doc:
            return str(doc["detail"])
    return str(doc)[:500]
