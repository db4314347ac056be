"""`equinox bench` as a library call: workload -> live load -> run directory and summary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from equinox.bench.keys import TenantKeys
from equinox.bench.live import build_series, live_summary, parse_fairness_counters, to_record, write_live_run_dir
from equinox.bench.loadgen import BenchRequest, LoadOptions, Outcome, discover_model, run_load, synth_prompt
from equinox.errors import BackendError, ConfigError
from equinox.metrics.collector import RequestRecord, TimeSeries
from equinox.metrics.summary import RunSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    """Everything one bench run needs."""

    target: str
    workload: str
    duration_s: float
    seed: int = 0
    rate_scale: float = 1.0
    num_tenants: int | None = None
    model: str | None = None
    interval_s: float = 1.0
    window_s: float | None = None  # None: 60 s, shrunk to fit short runs
    warmup_s: float | None = None  # None: 30 s, shrunk to fit short runs
    prompt_weight: float = 1.0
    output_weight: float = 2.0
    drain_timeout_s: float = 60.0
    max_connections: int = 2048
    ignore_eos: bool = True
    tenant_xargs: bool = False
    scrape_metrics: bool = True
    label: str = "live"

    def windows(self) -> tuple[float, float]:
        """(window_s, warmup_s): VTC's 60 s / 30 s, or a third / a sixth of a shorter run."""
        window = self.window_s if self.window_s is not None else min(60.0, self.duration_s / 3.0)
        warmup = self.warmup_s if self.warmup_s is not None else min(30.0, self.duration_s / 6.0)
        return max(window, self.interval_s), warmup


@dataclass
class BenchResult:
    """A finished bench run."""

    config: BenchConfig
    summary: RunSummary
    records: list[RequestRecord]
    outcomes: list[Outcome]
    stats: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None


def plan_requests(config: BenchConfig, keys: TenantKeys) -> tuple[list[BenchRequest], dict[str, str], Any]:
    """The workload's requests mapped to the tenants file's tenants, with synthetic prompts where needed."""
    from equinox.workload import load_workload

    wl = load_workload(config.workload, seed=config.seed, duration_s=config.duration_s,
                       rate_scale=config.rate_scale, num_tenants=config.num_tenants)
    mapping = keys.mapping(wl.tenants)
    plan = []
    for i, spec in enumerate(wl.requests):
        tenant = mapping[spec.tenant]
        prompt = spec.prompt_text or synth_prompt(spec.num_prompt_tokens, i)
        plan.append(BenchRequest(spec, tenant, keys.keys.get(tenant), prompt))
    return plan, mapping, wl


async def _scrape_loop(target: str, interval_s: float, t0_box: list[float], series: TimeSeries,
                       admin_key: str | None) -> None:
    """Sample the gateway's fairness counters once per interval (stops quietly when there are none)."""
    import time

    import httpx

    headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
    async with httpx.AsyncClient(timeout=5.0, trust_env=False, headers=headers) as client:
        while True:
            await asyncio.sleep(interval_s)
            try:
                resp = await client.get(target + "/metrics")
            except httpx.HTTPError:
                continue
            if resp.status_code != 200:
                return
            values = parse_fairness_counters(resp.text)
            if not values:
                return
            if t0_box:
                index = int((time.monotonic() - t0_box[0]) / interval_s)
                series.counters[index] = values


async def _run_async(config: BenchConfig, plan: list[BenchRequest], model: str,
                     on_progress: Callable[[int, int], None] | None,
                     admin_key: str | None = None) -> tuple[list[Outcome], TimeSeries]:
    import time

    opts = LoadOptions(target=config.target, model=model, duration_s=config.duration_s,
                       drain_timeout_s=config.drain_timeout_s, max_connections=config.max_connections,
                       ignore_eos=config.ignore_eos, tenant_xargs=config.tenant_xargs)
    counters = TimeSeries(config.interval_s)
    t0_box = [time.monotonic()]
    scraper = (asyncio.create_task(_scrape_loop(config.target, config.interval_s, t0_box, counters, admin_key))
               if config.scrape_metrics else None)
    try:
        outcomes, t0 = await run_load(plan, opts, on_progress)
    finally:
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scraper
    # the scraper's clock started a little before the load's: shift by the difference
    shift = int((t0 - t0_box[0]) / config.interval_s)
    counters.counters = {max(0, i - shift): v for i, v in counters.counters.items()}
    return outcomes, counters


def run_bench(config: BenchConfig, keys: TenantKeys, out_dir: str | Path | None = None,
              on_progress: Callable[[int, int], None] | None = None) -> BenchResult:
    """Run the load, summarise it like a simulated run, and write a run directory when `out_dir` is given."""
    if not config.target.startswith(("http://", "https://")):
        raise ConfigError(f"--target must be an http(s) URL such as http://127.0.0.1:8080, got {config.target!r}")
    if not config.duration_s > 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {config.duration_s}")
    plan, mapping, wl = plan_requests(config, keys)
    model = config.model
    if model is None:
        first_key = next(iter(keys.keys.values()), None)
        try:
            model = asyncio.run(discover_model(config.target, first_key))
        except Exception as exc:
            raise BackendError(f"cannot list models at {config.target}/v1/models ({exc}); "
                               "check --target and the tenants file, or pass --model") from None
    outcomes, counters = asyncio.run(_run_async(config, plan, model, on_progress, keys.admin_key))
    records = [to_record(o) for o in outcomes]
    window_s, warmup_s = config.windows()
    end = max([config.duration_s] + [r.finish_time or 0.0 for r in records])
    series = build_series(outcomes, records, config.interval_s, end)
    series.counters = counters.counters
    weights = {**{mapping.get(t, t): w for t, w in wl.tenant_weights.items()}, **keys.weights}
    arrival_end = min(config.duration_s, max((r.arrival_time for r in records), default=0.0))
    summary = live_summary(records, series, weights=weights, arrival_end_time=arrival_end,
                           prompt_weight=config.prompt_weight, output_weight=config.output_weight,
                           window_s=window_s, warmup_s=warmup_s)
    errors = Counter(_error_kind(o.error) for o in outcomes if o.error is not None)
    stats = {
        "num_sent": len(outcomes), "num_ok": sum(o.is_ok for o in outcomes),
        "num_errors": sum(o.error is not None for o in outcomes), "errors": dict(errors),
        "model": model, "target": config.target,
    }
    result = BenchResult(config, summary, records, outcomes, stats)
    if out_dir is not None:
        doc = {
            "kind": "live",
            "config": {**asdict(config), "policy": config.label, "window_s": window_s, "warmup_s": warmup_s,
                       "tenant_weights": weights},
            "workload": {"name": wl.name, "source": wl.source, "is_synthetic_tenants": wl.is_synthetic_tenants,
                         "num_requests": len(outcomes), "duration_s": config.duration_s,
                         "tenant_weights": weights, "tenant_mapping": mapping},
            "deployment": {"name": config.target, "gpu": "unknown", "model": model, "tensor_parallel": None,
                           "kv_capacity_tokens": None, "peak_flops": None},
            "engine": {"target": config.target},
            "cost_model": None,
        }
        result.run_dir = write_live_run_dir(out_dir, config=doc, summary=summary, stats=stats, records=records,
                                            series=series, weights=weights, prompt_weight=config.prompt_weight,
                                            output_weight=config.output_weight)
    return result


def _error_kind(error: str) -> str:
    """A short class of an error message (for the stats table)."""
    if error.startswith("HTTP "):
        return error.split(":", 1)[0]
    if error.startswith("unfinished"):
        return "unfinished"
    return error.split(":", 1)[0][:60]
