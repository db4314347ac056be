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

# The serving runtime's cost on top of each GPU's cost model, per GPU, as RunConfig fields
# (sim/cost_models/runtime.py), fitted by `benchmarks/engine_fidelity.py --fit` on the fit half
# of the measured runs (docs/results.md, "Engine fidelity", has the fit's log). A10G: the
# artifact's own profile (`vtc-a10g`) plus S-LoRA's per-iteration overhead; A100: the
# calibrated roofline for Llama-2-13B (no profile covers it) times a runtime-efficiency factor.
SLORA_RUNTIME: dict[str, dict[str, float]] = {
    "a10g": {"step_overhead_s": 0.0035, "seq_overhead_s": 0.0},
    "a100-80gb": {"runtime_scale": 1.15, "step_overhead_s": 0.0},
}


def _fitted_runtime() -> dict[str, dict[str, float]]:
    return {gpu: dict(fields) for gpu, fields in SLORA_RUNTIME.items()}


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: the engine and cost model, and changes to the run config (engine variants).

    `runtime` holds, per GPU, the serving runtime's cost on top of the cost model as RunConfig
    fields (`runtime_scale`, `decode_scale`, `step_overhead_s`, `seq_overhead_s`; see
    sim/cost_models/runtime.py); default: SLORA_RUNTIME, fitted on one half of the runs.
    `time_scale` is the shorthand `{gpu: runtime_scale}`. `overrides` are RunConfig fields
    applied last (e.g. `{"block_size": 16}`).
    """

    engine_mode: str = "slora"
    block_size: int = 1  # S-LoRA's KV pool is token-granular (max_total_token_num)
    cost_model: str = "auto"
    time_scale: Mapping[str, float] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, Mapping[str, float]] = field(default_factory=_fitted_runtime)

    def runtime_of(self, gpu: str) -> dict[str, float]:
        """The runtime's RunConfig fields on `gpu`."""
        fields = dict(self.runtime.get(gpu, {}))
        if gpu in self.time_scale:
            fields["runtime_scale"] = float(self.time_scale[gpu])
        return fields


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
    config = RunConfig(
        workload=run.name, policy=run.scheduler.policy, gpu=plat.gpu, model=plat.model, cost_model=cost_model,
        engine_mode=opts.engine_mode, max_num_batched_tokens=plat.batch_max_tokens,
        max_num_seqs=plat.running_max_req_size, block_size=opts.block_size,
        kv_capacity_tokens=plat.max_total_token_num, tenant_weights=dict(run.scheduler.tenant_weights),
        policy_params=dict(run.scheduler.params), admission_interval_steps=10,  # S-LoRA's max_wait_tokens
        lora_rank=adapter_rank(run) if opts.engine_mode == "slora" else 0,
    )
    try:
        return config.replace(**opts.runtime_of(plat.gpu), **opts.overrides)
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
