"""The gateway ASGI app (Starlette): routes for the OpenAI endpoints, /v1/models, /health and /metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from equinox.integrations.gateway.admission import GatewayError
from equinox.integrations.gateway.config import GatewayConfig, bearer_key, is_admin
from equinox.integrations.gateway.openai_format import error_body
from equinox.integrations.gateway.proxy import GenerationHandler
from equinox.integrations.gateway.runtime import GatewayState


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

    def unauthorised(message: str) -> Response:
        return Response(error_body(401, message, "authentication_error"), status_code=401,
                        media_type="application/json", headers={"www-authenticate": "Bearer"})

    def may_see_names(request: Request) -> bool:
        """Tenant and backend names are shown with an admin key, or to anyone with public_metrics."""
        return config.public_metrics or is_admin(config, bearer_key(request.headers))

    async def models(request: Request) -> Response:
        if state.auth.tenant_of(bearer_key(request.headers)) is None:
            return unauthorised("invalid or missing API key: send `Authorization: Bearer <key>`")
        data = [{"id": m, "object": "model", "owned_by": "equinox", "created": 0} for m in state.admission.models()]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        now = state.clock()
        backends = [{"name": b.name, "healthy": b.is_healthy(now), "window": round(b.window.value, 2),
                     "in_flight": b.num_in_flight, "models": sorted(b.models)} for b in state.admission.backends]
        ok = any(b["healthy"] for b in backends) and not state.is_draining
        status = "draining" if state.is_draining else "ok" if ok else "no healthy backend"
        body: dict[str, Any] = {"status": status, "num_healthy_backends": sum(bool(b["healthy"]) for b in backends)}
        if may_see_names(request):
            body.update({"policy": config.policy, "num_waiting": state.policy.num_waiting, "backends": backends})
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        if not may_see_names(request):
            return unauthorised("GET /metrics needs an admin key ([gateway] admin_key_sha256) as "
                                "`Authorization: Bearer <key>`, or `public_metrics = true` in the config")
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
    """Run the gateway until SIGTERM or Ctrl-C, then drain (see `server.py`)."""
    from equinox.integrations.gateway.server import serve as serve_gateway

    serve_gateway(config, log_level=log_level)


__all__ = ["GatewayError", "GatewayState", "build_app", "serve"]
