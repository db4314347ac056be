"""The gateway ASGI app (Starlette): routes, shared state, background tasks, and `serve`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from equinox.integrations.gateway.admission import Admission, GatewayError
from equinox.integrations.gateway.backends import Backend, Router
from equinox.integrations.gateway.config import Authenticator, GatewayConfig, bearer_key
from equinox.integrations.gateway.metrics import GatewayMetrics
from equinox.integrations.gateway.openai_format import error_body
from equinox.integrations.gateway.proxy import GenerationHandler
from equinox.scheduling.policy import make_policy

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0


class GatewayState:
    """Everything the handlers share: config, auth, policy + admission, backends, metrics, HTTP client."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.start_time = time.monotonic()
        self.auth = Authenticator(config.tenants)
        self.router = Router(config.backends, config.concurrency)
        self.policy = make_policy(config.policy, config.policy_config())
        self.admission = Admission(self.policy, self.router, config, self.clock)
        self.metrics = GatewayMetrics(lambda: self.admission, self.clock)
        self.request_ids = itertools.count()
        self.client: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def clock(self) -> float:
        """Seconds since the gateway started (the `now` every policy call gets)."""
        return time.monotonic() - self.start_time

    async def start(self) -> None:
        """Open the upstream client, probe every backend once, start accounting and health tasks."""
        import httpx

        cfg = self.config
        read_s = max(cfg.first_token_timeout_s, cfg.stall_timeout_s)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=cfg.connect_timeout_s, read=read_s, write=read_s, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=1024, keepalive_expiry=30.0),
        )
        await asyncio.gather(*(self.probe(b) for b in self.router.backends))
        self._tasks = [asyncio.create_task(self.admission.report_loop()), asyncio.create_task(self._health_loop())]

    async def stop(self) -> None:
        """Cancel background tasks and close the client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.client is not None:
            await self.client.aclose()

    async def probe(self, backend: Backend) -> None:
        """GET /v1/models on a backend: health, and its model list when the config names none."""
        headers = {"authorization": f"Bearer {backend.config.api_key}"} if backend.config.api_key else {}
        was_ok = backend.is_probe_ok
        try:
            resp = await self.client.get(backend.url + "/v1/models", headers=headers, timeout=PROBE_TIMEOUT_S)
            resp.raise_for_status()
            data = resp.json().get("data", [])
            if not backend.config.models:
                backend.models = {str(m["id"]) for m in data if isinstance(m, dict) and "id" in m}
            backend.is_probe_ok = True
        except Exception as exc:  # any failure means "not healthy"; the reason is logged
            backend.is_probe_ok = False
            if was_ok:
                logger.warning("backend %s failed its health probe: %s", backend.name, exc)
            return
        if not was_ok:
            logger.info("backend %s is healthy again", backend.name)
            self.admission.pump()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            await asyncio.gather(*(self.probe(b) for b in self.router.backends))
            self.admission.pump()


def build_app(config: GatewayConfig) -> Any:
    """The Starlette app serving the OpenAI routes, /health and /metrics."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    state = GatewayState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    async def models(request: Request) -> Response:
        if state.auth.tenant_of(bearer_key(request.headers)) is None:
            err = error_body(401, "invalid or missing API key: send `Authorization: Bearer <key>`",
                             "authentication_error")
            return Response(err, status_code=401, media_type="application/json",
                            headers={"www-authenticate": "Bearer"})
        data = [{"id": m, "object": "model", "owned_by": "equinox", "created": 0} for m in state.router.models()]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        now = state.clock()
        backends = [{"name": b.name, "healthy": b.is_healthy(now), "window": round(b.window.value, 2),
                     "in_flight": b.num_in_flight, "models": sorted(b.models)} for b in state.router.backends]
        ok = any(b["healthy"] for b in backends)
        body = {"status": "ok" if ok else "no healthy backend", "policy": config.policy,
                "num_waiting": state.policy.num_waiting, "backends": backends}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    routes = [
        Route("/v1/completions", GenerationHandler(state, is_chat=False), methods=["POST"]),
        Route("/v1/chat/completions", GenerationHandler(state, is_chat=True), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = state
    return app


def serve(config: GatewayConfig, *, log_level: str = "warning") -> None:
    """Run the gateway on uvicorn until interrupted."""
    import uvicorn

    app = build_app(config)
    logger.info("gateway on http://%s:%d (policy %s, %d backend(s), %d tenant(s))", config.host, config.port,
                config.policy, len(config.backends), len(config.tenants))
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5)


__all__ = ["GatewayError", "GatewayState", "build_app", "serve"]
