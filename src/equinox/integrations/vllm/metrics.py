"""Per-tenant observability of the vLLM plug-in: counters, a JSON snapshot, Prometheus text, logs.

The scheduler runs in vLLM's engine-core process, the `/metrics` endpoint in the API
server process. The scheduler therefore writes a small JSON snapshot (atomically, at
most every `write_interval_s`, and whenever the engine goes idle); the middleware
renders it as Prometheus text appended to vLLM's `/metrics`. Optionally the engine
core also serves the same text on a side port (`[metrics] port`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


# (field, prometheus name suffix, type, help)
_TENANT_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("num_requests_received", "requests_received_total", "counter", "Requests received per tenant."),
    ("num_requests_admitted", "requests_admitted_total", "counter", "Requests admitted to the running batch."),
    ("num_requests_finished", "requests_finished_total", "counter", "Requests that completed."),
    ("num_requests_aborted", "requests_aborted_total", "counter", "Requests cancelled or failed."),
    ("num_requests_rejected", "requests_rejected_total", "counter", "Requests the policy rejected."),
    ("num_requests_malformed", "requests_malformed_tenant_total", "counter",
     "Requests whose tenant id was malformed (served as the default tenant)."),
    ("num_preemptions", "preemptions_total", "counter", "Preemptions of the tenant's requests."),
    ("num_prompt_tokens", "prompt_tokens_served_total", "counter", "Prefill tokens computed for the tenant."),
    ("num_output_tokens", "output_tokens_served_total", "counter", "Output tokens generated for the tenant."),
    ("ttft_sum_s", "ttft_seconds_sum", "counter", "Sum of time to first token (scheduler view), seconds."),
    ("num_ttft", "ttft_seconds_count", "counter", "Requests with a first token."),
    ("num_waiting", "waiting_requests", "gauge", "Requests of the tenant waiting."),
    ("num_running", "running_requests", "gauge", "Requests of the tenant running."),
    ("counter", "fairness_counter", "gauge", "The policy's fairness counter for the tenant."),
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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _prom_type(suffix: str, kind: str) -> str:
    # TTFT sum/count are exported as plain series (a Prometheus summary without quantiles).
    return "untyped" if suffix.endswith(("_sum", "_count")) else kind


def render_prometheus(snapshot: Mapping[str, Any] | None) -> str:
    """Prometheus text exposition of a snapshot (empty string for None)."""
    if not snapshot:
        return ""
    lines: list[str] = []
    engine = snapshot.get("engine", {})
    tenants: Mapping[str, Mapping[str, Any]] = snapshot.get("tenants", {})
    lines.append(f"# HELP {PREFIX}_info Equinox scheduler plug-in in use.")
    lines.append(f"# TYPE {PREFIX}_info gauge")
    lines.append(
        f'{PREFIX}_info{{policy="{_label(str(engine.get("policy", "")))}",'
        f'scheduler_base="{_label(str(engine.get("scheduler_base", "")))}"}} 1'
    )
    for key, name, kind, help_text in (
        ("num_steps", "steps_total", "counter", "Engine iterations scheduled by Equinox."),
        ("token_budget", "token_budget", "gauge", "Per-iteration token budget in force (adaptive batching)."),
        ("max_num_seqs", "max_num_seqs", "gauge", "Per-iteration sequence cap in force."),
        ("last_step_duration_s", "last_step_duration_seconds", "gauge", "Duration of the last iteration."),
        ("num_kv_blocks_used", "kv_blocks_used", "gauge", "KV cache blocks in use."),
        ("num_kv_blocks_total", "kv_blocks_total", "gauge", "KV cache blocks in total."),
        ("overhead_s", "scheduler_overhead_seconds_total", "counter",
         "Time spent in Equinox's code around vLLM's schedule and update_from_output."),
    ):
        lines.append(f"# HELP {PREFIX}_{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}_{name} {kind}")
        lines.append(f"{PREFIX}_{name} {float(engine.get(key, 0))!r}")
    for fld, suffix, kind, help_text in _TENANT_METRICS:
        metric = f"{PREFIX}_tenant_{suffix}"
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} {_prom_type(suffix, kind)}")
        for tenant, stats in tenants.items():
            lines.append(f'{metric}{{tenant="{_label(tenant)}"}} {float(stats.get(fld, 0))!r}')
    return "\n".join(lines) + "\n"


class SidePortServer:
    """Serves the current metrics text on a side port from a daemon thread."""

    def __init__(self, port: int, render: Any, host: str = "0.0.0.0") -> None:
        renderer = render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = renderer().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="equinox-metrics", daemon=True)
        self.thread.start()
        logger.info("equinox metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
