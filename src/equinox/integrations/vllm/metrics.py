"""Per-tenant observability of the vLLM plug-in: counters, a JSON snapshot, Prometheus text, logs.

The scheduler runs in vLLM's engine-core process, the `/metrics` endpoint in the API
server process. The scheduler therefore writes a small JSON snapshot (atomically, at
most every `write_interval_s`, and whenever the engine goes idle); the middleware
renders it as Prometheus text appended to vLLM's `/metrics`. Optionally the engine
core also serves the same series on a side port (`[metrics] port`). Both are rendered
by prometheus_client from one collector, as the gateway renders its own.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "equinox"


def ensure_log_handler(process: str) -> None:
    """Make Equinox's log lines visible inside vLLM's processes (vLLM configures only its own logger)."""
    root = logging.getLogger("equinox")
    if root.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        f"({process} pid={os.getpid()}) %(levelname)s %(asctime)s %(name)s: %(message)s", "%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


@dataclass
class TenantStats:
    """Cumulative counters of one tenant (plus gauges refreshed at snapshot time)."""

    num_requests_received: int = 0
    num_requests_admitted: int = 0
    num_requests_finished: int = 0
    num_requests_aborted: int = 0
    num_requests_rejected: int = 0
    num_requests_malformed: int = 0
    num_preemptions: int = 0
    num_prompt_tokens: int = 0  # prefill tokens computed (recomputation after preemption included)
    num_output_tokens: int = 0
    ttft_sum_s: float = 0.0
    num_ttft: int = 0
    num_waiting: int = 0  # gauge
    num_running: int = 0  # gauge
    counter: float = 0.0  # gauge: the policy's fairness counter, when it has one


# (field, prometheus name, kind, help); counters get `_total` from prometheus_client, TTFT is a summary
_TENANT_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("num_requests_received", "requests_received", "counter", "Requests received per tenant."),
    ("num_requests_admitted", "requests_admitted", "counter", "Requests admitted to the running batch."),
    ("num_requests_finished", "requests_finished", "counter", "Requests that completed."),
    ("num_requests_aborted", "requests_aborted", "counter", "Requests cancelled or failed."),
    ("num_requests_rejected", "requests_rejected", "counter", "Requests the policy rejected."),
    ("num_requests_malformed", "requests_malformed_tenant", "counter",
     "Requests whose tenant id was malformed (served as the default tenant)."),
    ("num_preemptions", "preemptions", "counter", "Preemptions of the tenant's requests."),
    ("num_prompt_tokens", "prompt_tokens_served", "counter", "Prefill tokens computed for the tenant."),
    ("num_output_tokens", "output_tokens_served", "counter", "Output tokens generated for the tenant."),
    ("num_waiting", "waiting_requests", "gauge", "Requests of the tenant waiting."),
    ("num_running", "running_requests", "gauge", "Requests of the tenant running."),
    ("counter", "fairness_counter", "gauge", "The policy's fairness counter for the tenant."),
)

# (field, prometheus name, kind, help)
_ENGINE_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("num_steps", "steps", "counter", "Engine iterations scheduled by Equinox."),
    ("token_budget", "token_budget", "gauge", "Per-iteration token budget in force (adaptive batching)."),
    ("max_num_seqs", "max_num_seqs", "gauge", "Per-iteration sequence cap in force."),
    ("last_step_duration_s", "last_step_duration_seconds", "gauge", "Duration of the last iteration."),
    ("num_kv_blocks_used", "kv_blocks_used", "gauge", "KV cache blocks in use."),
    ("num_kv_blocks_total", "kv_blocks_total", "gauge", "KV cache blocks in total."),
    ("overhead_s", "scheduler_overhead_seconds", "counter",
     "Time spent in Equinox's code around vLLM's schedule and update_from_output."),
    ("num_counter_syncs", "global_counter_syncs", "counter",
     "Merged views of the cluster's counters applied ([global_counters])."),
    ("num_counter_sync_failures", "global_counter_sync_failures", "counter",
     "Counter syncs that failed or went unanswered ([global_counters])."),
)


@dataclass
class EngineStats:
    """Engine-wide figures of the plug-in."""

    policy: str = ""
    scheduler_base: str = ""
    num_steps: int = 0
    token_budget: int = 0
    max_num_seqs: int = 0
    last_step_duration_s: float = 0.0
    num_kv_blocks_used: int = 0
    num_kv_blocks_total: int = 0
    overhead_s: float = 0.0  # time spent in Equinox's own code around vLLM's schedule/update
    num_counter_syncs: int = 0  # global counters: merged views applied
    num_counter_sync_failures: int = 0


@dataclass
class MetricsBook:
    """All counters of the plug-in, with snapshot writing and periodic logging."""

    tenants: dict[str, TenantStats] = field(default_factory=dict)
    engine: EngineStats = field(default_factory=EngineStats)

    def tenant(self, name: str) -> TenantStats:
        """The stats of `name`, created on first use."""
        stats = self.tenants.get(name)
        if stats is None:
            stats = self.tenants[name] = TenantStats()
        return stats

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy of everything."""
        return {
            "engine": asdict(self.engine),
            "tenants": {name: asdict(stats) for name, stats in sorted(self.tenants.items())},
        }

    def log_summary(self) -> None:
        """One log line per tenant with its share of served tokens (never request content)."""
        total = sum(s.num_prompt_tokens + s.num_output_tokens for s in self.tenants.values()) or 1
        for name, s in sorted(self.tenants.items()):
            served = s.num_prompt_tokens + s.num_output_tokens
            ttft = s.ttft_sum_s / s.num_ttft if s.num_ttft else float("nan")
            logger.info(
                "equinox[%s] tenant=%s waiting=%d running=%d finished=%d aborted=%d "
                "served_tokens=%d share=%.3f mean_ttft=%.3fs counter=%.1f",
                self.engine.policy, name, s.num_waiting, s.num_running, s.num_requests_finished,
                s.num_requests_aborted, served, served / total, ttft, s.counter,
            )


def write_snapshot(path: str | Path, snapshot: Mapping[str, Any]) -> None:
    """Write `snapshot` as JSON atomically (readers never see a half-written file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".equinox-", dir=str(target.parent))
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(snapshot, fh)
        os.replace(tmp, target)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshot(path: str | Path) -> dict[str, Any] | None:
    """The last snapshot written to `path`, or None when there is none (yet)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class SnapshotCollector:
    """A prometheus_client collector of the plug-in's series, read from a snapshot at scrape time."""

    def __init__(self, snapshot_of: Callable[[], Mapping[str, Any] | None]) -> None:
        self._snapshot_of = snapshot_of

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        snapshot = self._snapshot_of()
        if not snapshot:
            return
        engine = snapshot.get("engine", {})
        tenants: Mapping[str, Mapping[str, Any]] = snapshot.get("tenants", {})
        info = GaugeMetricFamily(f"{PREFIX}_info", "Equinox scheduler plug-in in use.",
                                 labels=["policy", "scheduler_base"])
        info.add_metric([str(engine.get("policy", "")), str(engine.get("scheduler_base", ""))], 1)
        yield info
        families = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
        for key, name, kind, help_text in _ENGINE_METRICS:
            yield families[kind](f"{PREFIX}_{name}", help_text, value=float(engine.get(key, 0)))
        for key, name, kind, help_text in _TENANT_METRICS:
            family = families[kind](f"{PREFIX}_tenant_{name}", help_text, labels=["tenant"])
            for tenant, stats in tenants.items():
                family.add_metric([tenant], float(stats.get(key, 0)))
            yield family
        ttft = SummaryMetricFamily(f"{PREFIX}_tenant_ttft_seconds", "Time to first token (scheduler view), seconds.",
                                   labels=["tenant"])
        for tenant, stats in tenants.items():
            ttft.add_metric([tenant], count_value=int(stats.get("num_ttft", 0)),
                            sum_value=float(stats.get("ttft_sum_s", 0.0)))
        yield ttft


def snapshot_registry(snapshot_of: Callable[[], Mapping[str, Any] | None]) -> Any:
    """A prometheus_client registry holding only the plug-in's series."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot_of))  # type: ignore[arg-type]
    return registry


def render_prometheus(snapshot: Mapping[str, Any] | None) -> str:
    """Prometheus text exposition of a snapshot (empty string for None), rendered by prometheus_client."""
    if not snapshot:
        return ""
    from prometheus_client import generate_latest

    return generate_latest(snapshot_registry(lambda: snapshot)).decode()


class SidePortServer:
    """prometheus_client's HTTP server for the plug-in's series on a side port (a daemon thread)."""

    def __init__(self, port: int, snapshot_of: Callable[[], Mapping[str, Any] | None], host: str = "0.0.0.0") -> None:
        from prometheus_client import start_http_server

        self.server, self.thread = start_http_server(port, addr=host, registry=snapshot_registry(snapshot_of))
        logger.info("equinox metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
