"""ASGI middleware for vLLM's OpenAI server: tenant-id validation (400) and Equinox metrics on /metrics.

Load it with `--middleware equinox.integrations.vllm.middleware.EquinoxMiddleware`
(`equinox vllm serve` does). It runs in the API server process and never imports vLLM:

- a generation request whose `vllm_xargs` carries a malformed tenant id (not a string,
  empty, too long, odd characters) is answered `400` with an OpenAI-style error body
  before it reaches the engine (vLLM itself already answers 400 when `vllm_xargs` is not
  an object of strings, numbers and lists);
- `GET /metrics` gets the Equinox per-tenant series appended, read from the snapshot
  the scheduler writes (`[metrics] file` / EQUINOX_VLLM_METRICS_FILE).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from equinox.integrations.vllm.metrics import ensure_log_handler, read_snapshot, render_prometheus
from equinox.integrations.vllm.settings import PluginSettings, check_tenant_id, load_settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/responses")
MAX_BODY_BYTES = 64 * 1024 * 1024  # larger bodies are passed through unvalidated


def tenant_problem(body: bytes, tenant_key: str) -> str | None:
    """Why the request body's tenant id is unusable, or None (also None for non-JSON bodies)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None  # vLLM answers malformed JSON itself
    if not isinstance(data, dict):
        return None
    xargs = data.get("vllm_xargs")
    if not isinstance(xargs, dict) or tenant_key not in xargs:
        return None  # absent: default tenant; non-object vllm_xargs: vLLM's own 400
    problem = check_tenant_id(xargs[tenant_key])
    return None if problem is None else f"vllm_xargs.{tenant_key}: {problem}"


def error_body(message: str, param: str) -> bytes:
    """An OpenAI-style error body, as vLLM formats its own 400s."""
    return json.dumps({"error": {"message": message, "type": "BadRequestError", "param": param, "code": 400}}).encode()


class EquinoxMiddleware:
    """Validates tenant ids and extends /metrics (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: PluginSettings | None = None) -> None:
        self.app = app
        self.settings = settings or load_settings()
        ensure_log_handler("APIServer")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        method = scope.get("method", "GET")
        if method == "POST" and path in GENERATION_PATHS:
            await self._validated(scope, receive, send)
        elif method == "GET" and path.rstrip("/") == "/metrics":
            await self._metrics(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _validated(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        messages: list[Message] = []
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        problem = tenant_problem(body, self.settings.tenant_key) if size <= MAX_BODY_BYTES else None
        if problem is not None:
            logger.info("rejected %s with a malformed tenant id: %s", scope.get("path"), problem)
            payload = error_body(problem, f"vllm_xargs.{self.settings.tenant_key}")
            await send({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        replay = iter(messages)

        async def replay_receive() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.settings.metrics_file
        if not path:
            await self.app(scope, receive, send)
            return
        # Ask for an uncompressed body so the Equinox series can be appended.
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
        start: Message | None = None
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            extra = render_prometheus(read_snapshot(path)).encode()
            body = b"".join(parts)
            if start is not None and start.get("status") == 200:
                if body and not body.endswith(b"\n"):
                    body += b"\n"
                body += extra
            head = dict(start or {"type": "http.response.start", "status": 200})
            head["headers"] = [(k, v) for k, v in head.get("headers", []) if k.lower() != b"content-length"]
            head["headers"].append((b"content-length", str(len(body)).encode()))
            await send(head)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
