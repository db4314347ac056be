"""The Ray Serve application: a fair OpenAI-compatible ingress and N fair replicas (issue 14 items 1, 3).

- `Ingress` (HTTP): authenticates the API key with the gateway's config and code (a client
  never picks its tenant: tenant fields of the body are replaced by the authenticated one),
  validates the body as the gateway does, and calls a replica through a handle whose
  replica choice is `FairRequestRouter` (router.py). A request whose replica dies before
  its first chunk is routed again (at most `max_attempts` tries); one that dies after it
  ends with a clear error (an error event in a stream, HTTP 502 otherwise). Nothing is
  dropped silently.
- `FairReplica`: an Equinox policy's waiting queue (`FairQueue`) in front of an engine (the
  in-process fake, or a vLLM OpenAI server per replica: `[[backends]]` url number
  rank mod count). With `sync_interval_s` its policy syncs with the counter actor
  (counters.py) every Δ seconds, so the fair order is by cluster-wide service; its queue
  figures go to the router as Serve routing stats.

Per-tenant metrics go through `ray.serve.metrics` (Ray's Prometheus export):
`equinox_serve_requests` {tenant, outcome} and `equinox_serve_output_tokens` {tenant} from
the ingress; `equinox_replica_waiting`, `equinox_replica_running` {tenant} and
`equinox_replica_counter` {tenant} from the replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.metrics import Counter, Gauge

from equinox.integrations.gateway.config import Authenticator, GatewayConfig, bearer_key
from equinox.integrations.gateway.openai_format import (
    Aggregator,
    error_body,
    output_limit,
    parse_body,
    sse,
    upstream_body,
    wants_usage_chunk,
)
from equinox.integrations.ray.counters import ACTOR_NAME
from equinox.integrations.ray.replica_queue import (
    EngineFailure,
    FairQueue,
    FakeEngine,
    OpenAIEngine,
    QueuedRequest,
    QueueRejected,
    serve_one,
)
from equinox.streaming import count_tokens

logger = logging.getLogger(__name__)

COUNTER_NAMESPACE = "equinox"
PATHS = ("/v1/completions", "/v1/chat/completions")


@dataclass(frozen=True)
class ServeSettings:
    """Everything the Serve application needs besides Ray itself."""

    gateway: GatewayConfig  # tenants, keys, policy, limits, [[backends]] (vLLM replicas when not fake)
    num_replicas: int = 2
    is_fake: bool = False  # in-process fake engines instead of the configured backends
    model: str = "fake-model"  # the model name the fake engines serve
    max_running: int = 8  # requests a replica runs at once (its engine's concurrency)
    fake_ttft_s: float = 0.01
    fake_itl_s: float = 0.005
    sync_interval_s: float | None = 0.2  # Δ; None: per-replica counters only
    counter_actor: str = ACTOR_NAME
    counter_snapshot: str | None = None  # the actor's snapshot file (restart persistence)
    forget_after_s: float | None = None  # a replica silent this long leaves the lift's backlog (None: 20 Δ, >= 5 s)
    routing_stats_period_s: float = 0.2
    max_attempts: int = 3  # replicas tried for a request whose replica died before its first chunk
    app_name: str = "equinox"
    route_prefix: str = "/"

    def models(self) -> list[str]:
        """Models served: the fake's, or the ones listed for the backends."""
        if self.is_fake:
            return [self.model]
        return sorted({m for b in self.gateway.backends for m in b.models}) or [self.model]


class _ReplicaDied(Exception):
    """The replica serving a request died (before or after its first chunk)."""


class FairReplica:
    """An Equinox policy's fair queue in front of one engine (see the module docstring)."""

    async def __init__(self, settings: ServeSettings) -> None:  # type: ignore[misc]  # Serve awaits it
        from equinox.scheduling.global_counters import CounterClient
        from equinox.scheduling.policy import make_policy

        cfg = settings.gateway
        self.settings = settings
        ctx = serve.get_replica_context()
        self.name = ctx.replica_id.unique_id
        self.policy = make_policy(cfg.policy, cfg.policy_config())
        self.policy.set_platform(cfg.platform.platform())
        self.queue = FairQueue(self.policy, settings.max_running, time.monotonic,
                               max_queue_of={t.name: t.max_queue for t in cfg.tenants},
                               max_queue_total=cfg.max_queue_total)
        if settings.is_fake:
            self.engine: Any = FakeEngine(settings.model, settings.fake_ttft_s, settings.fake_itl_s)
        else:
            rank: Any = getattr(ctx.rank, "rank", ctx.rank)  # a ReplicaRank (Ray 2.60) or an int
            backend = cfg.backends[int(rank or 0) % len(cfg.backends)]
            self.engine = OpenAIEngine(backend.url, api_key=backend.api_key,
                                       connect_timeout_s=cfg.connect_timeout_s, stall_timeout_s=cfg.stall_timeout_s)
        self.client = CounterClient(self.name, self.policy) if settings.sync_interval_s else None
        self.actor: Any = None
        self.num_syncs = 0
        self._gauges = {k: Gauge(f"equinox_replica_{k}", description=f"per-tenant {k} on a fair replica",
                                 tag_keys=("tenant",)) for k in ("waiting", "running", "counter")}
        self._tasks = [asyncio.get_running_loop().create_task(self._usage_loop())]
        if self.client is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._sync_loop()))

    async def generate(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Queue one request fairly, run it, stream its chunks (an `error` chunk when it cannot run)."""
        req = QueuedRequest(job["request_id"], job["tenant"], time.monotonic(), int(job["num_prompt_tokens"]),
                            int(job["max_tokens"]))
        try:
            async for chunk in serve_one(self.queue, self.engine, req, job["path"], job["body"]):
                yield chunk
        except QueueRejected as exc:
            yield {"error": {"message": exc.message, "type": exc.kind, "code": exc.status}}
        except EngineFailure as exc:
            yield {"error": {"message": str(exc), "type": "engine_error", "code": 502}}

    def record_routing_stats(self) -> dict[str, Any]:
        """Queue figures for `FairRequestRouter` (Serve calls this every routing-stats period)."""
        stats = self.queue.stats()
        stats["num_syncs"] = self.num_syncs
        return stats

    def stats(self) -> dict[str, Any]:
        """Queue figures, the replica's name and how often it synced (tests, operators)."""
        return {"replica": self.name, **self.record_routing_stats(),
                "shared_counters": self.policy.shared_counters()}

    async def _usage_loop(self) -> None:
        interval = self.settings.gateway.usage_report_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.queue.report_usage()
                self._export_gauges()
            except Exception:  # a policy bug must not stop accounting for everyone
                logger.exception("usage report failed")

    def _export_gauges(self) -> None:
        stats = self.queue.stats()
        for tenant in self.settings.gateway.tenants:
            tags = {"tenant": tenant.name}
            self._gauges["waiting"].set(stats["waiting_by_tenant"].get(tenant.name, 0), tags)
            self._gauges["running"].set(stats["running_by_tenant"].get(tenant.name, 0), tags)
            self._gauges["counter"].set(stats["counters"].get(tenant.name, 0.0), tags)

    async def _sync_loop(self) -> None:
        """Every Δ: report counter growth to the actor, shift the policy onto the merged view."""
        import ray

        assert self.client is not None and self.settings.sync_interval_s is not None
        while True:
            await asyncio.sleep(self.settings.sync_interval_s)
            try:
                if self.actor is None:
                    self.actor = ray.get_actor(self.settings.counter_actor, namespace=COUNTER_NAMESPACE)
                view = await asyncio.wait_for(self.actor.merge.remote(self.client.report().as_dict()), 10.0)
                self.client.apply(view)
                self.num_syncs += 1
                self.queue.pump()
            except Exception as exc:  # the actor restarting or absent: keep serving on local counters
                logger.warning("counter sync of %s failed: %s", self.name, exc)
                self.actor = None


class Ingress:
    """OpenAI-compatible front door: authenticate, stamp the tenant, route to a fair replica."""

    def __init__(self, settings: ServeSettings, replicas: Any) -> None:
        self.settings = settings
        self.config = settings.gateway
        self.auth = Authenticator(self.config.tenants)
        self.replicas = replicas.options(stream=True)
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self._requests = Counter("equinox_serve_requests", description="requests by tenant and outcome",
                                 tag_keys=("tenant", "outcome"))  # type: ignore[arg-type]  # Ray's hint: a 1-tuple
        self._tokens = Counter("equinox_serve_output_tokens", description="output tokens relayed per tenant",
                               tag_keys=("tenant",))

    async def __call__(self, request: Any) -> Any:
        """Serve /v1/completions, /v1/chat/completions, /v1/models and /health."""
        from starlette.responses import JSONResponse, Response

        path = request.url.path
        if request.method == "GET" and path == "/health":
            return JSONResponse({"status": "ok"})
        if request.method == "GET" and path == "/v1/models":
            return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "equinox"}
                                                            for m in self.settings.models()]})
        if request.method != "POST" or path not in PATHS:
            return Response(error_body(404, f"no route {request.method} {path}", "not_found"), 404,
                            media_type="application/json")
        tenant = self.auth.tenant_of(bearer_key({k.lower(): v for k, v in request.headers.items()}))
        if tenant is None:
            self._requests.inc(tags={"tenant": "(unauthenticated)", "outcome": "authentication_error"})
            return Response(error_body(401, "invalid or missing API key: send `Authorization: Bearer <key>`",
                                       "authentication_error"), 401, media_type="application/json")
        try:
            job, is_stream, wants_usage = await self._prepare(request, tenant, path)
        except _BadRequest as bad:
            self._requests.inc(tags={"tenant": tenant.name, "outcome": bad.kind})
            return Response(error_body(bad.status, bad.message, bad.kind), bad.status, media_type="application/json")
        return await self._respond(job, is_stream, wants_usage, path.endswith("/chat/completions"))

    async def _prepare(self, request: Any, tenant: Any, path: str) -> tuple[dict[str, Any], bool, bool]:
        """Validate the body as the gateway does; the job a replica runs."""
        from equinox.integrations.gateway.admission import GatewayError, estimate_chat_tokens, estimate_prompt_tokens

        body = await request.body()
        if len(body) > self.config.max_body_bytes:
            raise _BadRequest(413, f"request body exceeds {self.config.max_body_bytes} bytes", "invalid_request_error")
        try:
            payload = parse_body(body, self.config.max_json_depth)
        except GatewayError as err:
            raise _BadRequest(err.status, err.message, err.kind) from None
        model = payload.get("model")
        if model not in self.settings.models():
            raise _BadRequest(404, f"model {model!r} does not exist; served: {', '.join(self.settings.models())}",
                              "model_not_found")
        is_stream = payload.get("stream", False)
        if not isinstance(is_stream, bool):
            raise _BadRequest(400, "field 'stream' must be true or false", "invalid_request_error")
        is_chat = path.endswith("/chat/completions")
        if is_chat:
            messages = payload.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _BadRequest(400, "field 'messages' must be a non-empty list", "invalid_request_error")
            num_prompt = estimate_chat_tokens(messages, self.config.chars_per_token)
        else:
            prompt = payload.get("prompt")
            if not isinstance(prompt, (str, list)) or not prompt:
                raise _BadRequest(400, "field 'prompt' must be a non-empty string or list", "invalid_request_error")
            num_prompt = estimate_prompt_tokens(prompt, self.config.chars_per_token)
        try:
            max_tokens = output_limit(payload, tenant.max_tokens, is_chat=is_chat)
        except ValueError as exc:
            raise _BadRequest(400, str(exc), "invalid_request_error") from None
        wants_usage = wants_usage_chunk(payload)
        job = {"request_id": f"eqx-{self._prefix}-{next(self._ids)}", "tenant": tenant.name, "path": path,
               "num_prompt_tokens": num_prompt, "max_tokens": max_tokens,
               "body": upstream_body(payload, tenant.name, self.config.tenant_key, is_vllm=True)}
        return job, is_stream, wants_usage

    async def _first_chunk(self, job: dict[str, Any]) -> tuple[Any, dict[str, Any] | None, int]:
        """A replica's stream and its first chunk, routing again while replicas die before it."""
        import ray.exceptions as rex

        last = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            gen = self.replicas.generate.remote(job)
            try:
                return gen, await gen.__anext__(), attempt
            except StopAsyncIteration:
                return gen, None, attempt
            except (rex.RayActorError, rex.ActorUnavailableError) as exc:
                last = f"{type(exc).__name__}"
                logger.warning("request %s: replica lost before its first chunk (%s); routing again",
                               job["request_id"], last)
                await asyncio.sleep(0.05 * attempt)
        raise _ReplicaDied(f"{self.settings.max_attempts} replicas failed before the first token ({last})")

    async def _respond(self, job: dict[str, Any], is_stream: bool, wants_usage: bool, is_chat: bool) -> Any:
        from starlette.responses import JSONResponse, Response, StreamingResponse

        tenant = job["tenant"]
        try:
            gen, first, attempts = await self._first_chunk(job)
        except _ReplicaDied as exc:
            self._requests.inc(tags={"tenant": tenant, "outcome": "replica_lost"})
            return Response(error_body(503, f"request {job['request_id']} was not served: {exc}; retry",
                                       "replica_lost"), 503, media_type="application/json")
        headers = {"x-equinox-request-id": job["request_id"], "x-equinox-tenant": tenant,
                   "x-equinox-attempts": str(attempts)}
        if first is not None and "error" in first:
            err = first["error"]
            self._requests.inc(tags={"tenant": tenant, "outcome": str(err.get("type"))})
            return Response(json.dumps(first).encode(), int(err.get("code", 502)), headers=headers,
                            media_type="application/json")
        if is_stream:
            return StreamingResponse(self._relay(gen, first, tenant, wants_usage), headers=headers,
                                     media_type="text/event-stream")
        agg = Aggregator(is_chat)
        try:
            async for chunk in _chain(first, gen):
                if "error" in chunk:
                    raise EngineFailure(chunk["error"].get("message", "engine error"))
                self._count_tokens(chunk, tenant)
                agg.add(chunk)
        except Exception as exc:  # replica died or the engine failed after the first token
            self._requests.inc(tags={"tenant": tenant, "outcome": "failed_mid_response"})
            return Response(error_body(502, f"request {job['request_id']} failed after its first token: "
                                       f"{_describe(exc)}; the response is incomplete, retry", "replica_lost"), 502,
                            headers=headers, media_type="application/json")
        self._requests.inc(tags={"tenant": tenant, "outcome": "ok"})
        return JSONResponse(agg.response(), headers=headers)

    def _count_tokens(self, chunk: dict[str, Any], tenant: str) -> None:
        num = count_tokens(chunk)
        if num:  # Ray's counters refuse increments of 0
            self._tokens.inc(num, tags={"tenant": tenant})

    async def _relay(self, gen: Any, first: dict[str, Any] | None, tenant: str,
                     wants_usage: bool) -> AsyncIterator[bytes]:
        """The SSE stream; a failure after the first chunk becomes an error event, then [DONE]."""
        outcome = "ok"
        try:
            async for chunk in _chain(first, gen):
                if "error" in chunk:
                    outcome = "engine_error"
                    yield sse(json.dumps(chunk))
                    break
                if not chunk.get("choices") and chunk.get("usage") and not wants_usage:
                    continue
                self._count_tokens(chunk, tenant)
                yield sse(json.dumps(chunk))
        except Exception as exc:
            outcome = "failed_mid_response"
            yield sse(error_body(502, f"the replica failed mid-response ({_describe(exc)}); the response is "
                                 "incomplete, retry", "replica_lost"))
        finally:
            self._requests.inc(tags={"tenant": tenant, "outcome": outcome})
        yield sse("[DONE]")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


async def _chain(first: dict[str, Any] | None, gen: Any) -> AsyncIterator[dict[str, Any]]:
    if first is None:
        return
    yield first
    async for chunk in gen:
        yield chunk


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__


def build_app(settings: ServeSettings) -> Any:
    """The bound Serve application (ingress over `num_replicas` fair replicas)."""
    router: dict[str, Any] = {  # Ray's pydantic model: its generated hints do not match its fields
        "request_router_class": "equinox.integrations.ray.router.FairRequestRouter",
        "request_routing_stats_period_s": settings.routing_stats_period_s,
        "request_routing_stats_timeout_s": max(1.0, 5 * settings.routing_stats_period_s),
    }
    # Queues form in the replicas' fair queues, not in Serve's: no cap on ongoing requests; no CPU
    # reserved (the engines, not these actors, do the work).
    replicas = serve.deployment(
        num_replicas=settings.num_replicas, max_ongoing_requests=100_000, ray_actor_options={"num_cpus": 0},
        request_router_config=RequestRouterConfig(**router),
    )(FairReplica).bind(settings)
    ingress = serve.deployment(max_ongoing_requests=100_000, ray_actor_options={"num_cpus": 0})(Ingress)
    return ingress.bind(settings, replicas)


_BUILDER_ARGS = {"config", "replicas", "fake_engine", "max_running", "sync_interval_s", "counter_snapshot", "policy"}


def settings_from_args(args: dict[str, Any]) -> ServeSettings:
    """ServeSettings from a Serve config file's `args` (what `equinox serve --ray` takes as flags)."""
    import dataclasses

    from equinox.errors import ConfigError
    from equinox.integrations.gateway.config import load_config

    unknown = sorted(set(args) - _BUILDER_ARGS)
    if unknown:
        raise ConfigError(f"Serve application args: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(_BUILDER_ARGS))}")
    if not isinstance(args.get("config"), str):
        raise ConfigError("Serve application args: config must name the gateway TOML file (docs/scale-out.md)")
    config = load_config(args["config"])
    if args.get("policy"):
        config = dataclasses.replace(config, policy=str(args["policy"]))
    is_fake = bool(args.get("fake_engine", False))
    replicas = args.get("replicas", 2 if is_fake else len(config.backends))
    max_running = args.get("max_running", 8)
    for name, value in (("replicas", replicas), ("max_running", max_running)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"Serve application args: {name} must be an integer >= 1, got {value!r}")
    sync = args.get("sync_interval_s", 0.2)  # null: per-replica counters only
    if sync is not None and (isinstance(sync, bool) or not isinstance(sync, (int, float)) or not sync > 0):
        raise ConfigError(f"Serve application args: sync_interval_s must be a positive number of seconds "
                          f"or null, got {sync!r}")
    snapshot = args.get("counter_snapshot")
    return ServeSettings(config, num_replicas=replicas, is_fake=is_fake, max_running=max_running,
                         sync_interval_s=None if sync is None else float(sync),
                         counter_snapshot=None if snapshot is None else str(snapshot))


def app_builder(args: dict[str, Any]) -> Any:
    """Serve's application builder (`import_path: equinox.integrations.ray.serve_app:app_builder`):
    `serve run` / `serve deploy` / a KubeRay RayService with the gateway TOML named in `args`.

    Creates the counter actor (detached) when syncing, as `start` does; Serve's HTTP options come
    from the Serve config file, not from the TOML's [gateway] host/port."""
    settings = settings_from_args(dict(args))
    if settings.sync_interval_s:
        from equinox.integrations.ray.counters import counter_actor

        forget = settings.forget_after_s or max(5.0, 20 * settings.sync_interval_s)
        counter_actor(settings.counter_snapshot, name=settings.counter_actor, namespace=COUNTER_NAMESPACE,
                      is_detached=True, forget_after_s=forget)
    return build_app(settings)


def start(settings: ServeSettings, *, host: str | None = None, port: int | None = None) -> Any:
    """Create the counter actor (detached, with its snapshot) when syncing, start Serve and the app."""
    from equinox.integrations.ray.counters import counter_actor

    if settings.sync_interval_s:
        forget = settings.forget_after_s or max(5.0, 20 * settings.sync_interval_s)
        counter_actor(settings.counter_snapshot, name=settings.counter_actor, namespace=COUNTER_NAMESPACE,
                      is_detached=True, forget_after_s=forget)
    serve.start(http_options={"host": host or settings.gateway.host, "port": port or settings.gateway.port})
    return serve.run(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix)


def shutdown(settings: ServeSettings) -> None:
    """Delete the app and the counter actor (the snapshot file stays)."""
    import ray

    with contextlib.suppress(Exception):
        serve.delete(settings.app_name)
    with contextlib.suppress(Exception):
        ray.kill(ray.get_actor(settings.counter_actor, namespace=COUNTER_NAMESPACE), no_restart=True)
