"""Replay a measured VTC-artifact run through the simulator, with the same policy and setting."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from equinox.calibration.fidelity import Comparison, Row, figures
from equinox.calibration.vtc_measured import MeasuredRun
from equinox.config import RunConfig
from equinox.errors import ConfigError
from equinox.sim.cost_model import COST_MODELS, CostModel
from equinox.sim.hardware import Deployment
from equinox.types import BatchShape


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: the engine and cost model, and changes to the run config (engine variants).

    `time_scale` multiplies every iteration time on a GPU (`{"a100-80gb": 1.2}`): a
    runtime-efficiency factor, fitted on one half of the runs (benchmarks/engine_fidelity.py).
    `overrides` are RunConfig fields applied last (e.g. `{"block_size": 16}`).
    """

    engine_mode: str = "slora"
    block_size: int = 1  # S-LoRA's KV pool is token-granular (max_total_token_num)
    cost_model: str = "auto"
    time_scale: Mapping[str, float] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)


def adapter_rank(run: MeasuredRun) -> int:
    """The LoRA rank in the artifact's adapter names (`dummy-lora-7b-rank-8-0`): S-LoRA sets 4 x rank
    KV tokens aside per adapter in the batch even with --no-lora; 0 when the names do not say."""
    ranks = {int(m.group(1)) for name in run.clients if (m := re.search(r"rank-(\d+)", name))}
    return ranks.pop() if len(ranks) == 1 else 0


def replay_config(run: MeasuredRun, options: ReplayOptions | None = None) -> RunConfig:
    """The RunConfig that replays `run`: its policy, GPU, model, KV pool and S-LoRA's batch limits."""
    opts = options or ReplayOptions()
    plat = run.platform
    cost_model = opts.cost_model
    scale = float(opts.time_scale.get(plat.gpu, 1.0))
    if scale != 1.0:
        cost_model = scaled_cost_model(cost_model, scale)
    config = RunConfig(
        workload=run.name, policy=run.scheduler.policy, gpu=plat.gpu, model=plat.model, cost_model=cost_model,
        engine_mode=opts.engine_mode, max_num_batched_tokens=plat.batch_max_tokens,
        max_num_seqs=plat.running_max_req_size, block_size=opts.block_size,
        kv_capacity_tokens=plat.max_total_token_num, tenant_weights=dict(run.scheduler.tenant_weights),
        policy_params=dict(run.scheduler.params), admission_interval_steps=10,  # S-LoRA's max_wait_tokens
        lora_rank=adapter_rank(run) if opts.engine_mode == "slora" else 0,
    )
    try:
        return config.replace(**opts.overrides)
    except TypeError as exc:
        raise ConfigError(f"bad engine override: {exc}") from None


@dataclass(frozen=True)
class Replay:
    """A replayed run: the comparison, the cost model used and how many requests did not finish."""

    run: MeasuredRun
    config: RunConfig
    cost_model_name: str
    comparison: Comparison
    num_unfinished: int
    wall_s: float


def replay(run: MeasuredRun, options: ReplayOptions | None = None) -> Replay:
    """Simulate `run` and compare its figures with the measured ones."""
    from equinox.sim.run import run_simulation  # the simulator is heavy; import on use

    config = replay_config(run, options)
    workload = run.to_workload()
    result = run_simulation(config, workload)
    weights = dict(run.scheduler.tenant_weights)
    sim_rows = [
        Row(r.tenant, r.arrival_time, r.first_token_time, r.finish_time, r.num_prompt_tokens, r.num_output_tokens)
        for r in result.records
        if r.first_token_time is not None and r.finish_time is not None
    ]
    measured_rows = [
        Row(r.client, r.arrival_time, r.first_token_time, r.finish_time, r.num_prompt_tokens, r.num_output_tokens)
        for r in run.requests
    ]
    end = max(r.arrival_time for r in run.requests)
    comparison = Comparison(
        figures(measured_rows, weights, arrival_end_time=end),
        figures(sim_rows, weights, arrival_end_time=end),
    )
    return Replay(run, config, result.cost_model_name, comparison, len(run.requests) - len(sim_rows), result.wall_s)


class ScaledCostModel:
    """A cost model whose every iteration takes `scale` times as long (a runtime-efficiency factor)."""

    def __init__(self, base: CostModel, scale: float) -> None:
        self.base = base
        self.scale = scale
        self.name = f"{base.name}*{scale:.4g}"

    def iteration_time(self, batch: BatchShape) -> float:
        """The base model's time, scaled."""
        return self.scale * self.base.iteration_time(batch)


def scaled_cost_model(base: str, scale: float) -> str:
    """Register (once) and return the name of cost model `base` scaled by `scale`."""
    if not scale > 0:
        raise ConfigError(f"time scale must be > 0, got {scale!r}")
    name = f"{base}*{scale:.6g}"
    if name not in COST_MODELS:

        def build(deployment: Deployment) -> CostModel:
            from equinox.sim import cost_models

            inner = (cost_models.default_cost_model(deployment) if base == "auto"
                     else cost_models.build_cost_model(base, deployment))
            return ScaledCostModel(inner, scale)

        COST_MODELS.register(name, build, f"{base} with every iteration time x{scale:.6g}")
    return name
