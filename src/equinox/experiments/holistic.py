"""The `holistic` experiment set (issue 11 items 2 and 3): scenarios where user-side and resource-side
fairness disagree, Equinox's knobs swept on each, and the baselines as fixed points of the Pareto views.

Sections: every scenario of `workload/scenarios.py` on VTC's platform (Llama-2-7B on an A10G, cost
model `auto`, i.e. the VTC artifact's measured A10G profile), and one scenario on A10G, A100-80GB and
H100-80GB with the calibrated roofline (one cost-model family across the three), the fitted models
(`auto`: vtc-a10g, vidur) beside it. Every run is at PAPER_RHO x the platform's measured capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from equinox.config import RunConfig
from equinox.experiments.spec import RunSpec

RHO = 1.3  # offered load: 1.3 x saturated capacity (the flooding tenants are past their shares)
MAIN_PLATFORM = ("a10g", "llama-2-7b")  # VTC's own setting (its artifact's A10G measurements)
CROSS_SCENARIO = "holistic-prefill-decode"
CROSS_GPUS = ("a10g", "a100-80gb", "h100-80gb")
SCENARIOS_FULL = ("holistic-prefill-decode", "holistic-long-context", "holistic-bursty", "holistic-weighted",
                  "holistic-lmsys")
SCENARIOS_QUICK = ("holistic-prefill-decode", "holistic-lmsys")
# VTC on its artifact engine runs with the serving runtime that benchmarks/engine_fidelity.py fits against
# the artifact's measured runs (calibration/replay.py SLORA_RUNTIME; no fit for the H100: the bare engine).
BASELINES = ("vtc", "fcfs", "rpm", "vtc@slora", "equinox")


@dataclass(frozen=True)
class Knobs:
    """One point of the Equinox sweep (parameters that differ from EquinoxParams' defaults)."""

    params: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        """Variant name, e.g. 'eq a=0.5 b=0.5 f=0.5'."""
        short = {"alpha": "a", "beta": "b", "f_min": "f", "compute_share": "c", "kv_admission": "kv",
                 "shortest_prompt_first": "spf", "tpot_target_s": "tpot", "latency_scale_s": "tau",
                 "kv_fair_share": "kvfair", "kv_share_slack": "slack"}
        return "eq " + " ".join(f"{short.get(k, k)}={_fmt(v)}" for k, v in self.params)


def _fmt(v: Any) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else f"{v:g}"


AB_FULL = ((1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0))
AB_QUICK = ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0))
# Adaptive batching's TPOT target bounds how long a small request waits behind a long prefill chunk.
ONE_AT_A_TIME: tuple[tuple[tuple[str, Any], ...], ...] = (
    (("kv_admission", False),), (("shortest_prompt_first", False),), (("tpot_target_s", 0.3),),
    (("tpot_target_s", 0.075),), (("alpha", 0.0), ("beta", 1.0), ("tpot_target_s", 0.075)),
    (("f_min", 0.5), ("latency_scale_s", 0.5)), (("alpha", 0.5), ("beta", 0.5), ("f_min", 0.25)),
)

# KV fair share (isolation): an under-share tenant goes before a head over its KV share within the slack.
KV_SHARE: tuple[tuple[tuple[str, Any], ...], ...] = (
    (("kv_fair_share", False),), (("kv_share_slack", 2048.0),),
)


def sweep(quick: bool) -> list[Knobs]:
    """The Equinox points: alpha/beta x f_min (x compute_share when beta > 0), then one knob at a time.

    Points equal to EquinoxParams' defaults are left out: the `equinox` baseline is that point.
    """
    from equinox.scheduling.policies.equinox_params import EquinoxParams

    defaults = EquinoxParams()
    points: list[Knobs] = []
    for alpha, beta in AB_QUICK if quick else AB_FULL:
        for f_min in (1.0,) if quick and beta > 0 else (1.0, 0.5):
            for c in (0.5, 1.0) if beta > 0 and not quick else (0.5,):
                p: list[tuple[str, Any]] = [("alpha", alpha), ("beta", beta), ("f_min", f_min)]
                if beta > 0:
                    p.append(("compute_share", c))
                points.append(Knobs(tuple(p)))
    if not quick:
        points += [Knobs(p) for p in ONE_AT_A_TIME]
    points += [Knobs(p) for p in KV_SHARE]
    return [k for k in points if EquinoxParams.from_mapping(dict(k.params)) != defaults]


def _baseline(base: RunConfig, policy: str, path: str, section: str, labels: tuple[tuple[str, str], ...]
              ) -> RunSpec:
    from equinox.experiments.sets import RPM_SHARE

    name, engine = policy, "vllm"
    config = base
    if policy == "vtc@slora":  # VTC as its artifact ran it: S-LoRA's engine and runtime
        name, engine = "vtc", "slora"
        from equinox.calibration.replay import SLORA_RUNTIME
        from equinox.sim.engine.slora import COMPARISON_MAX_REQ_TOTAL_LEN

        config = config.replace(**SLORA_RUNTIME.get(base.gpu, {}), max_req_total_len=COMPARISON_MAX_REQ_TOTAL_LEN)
    config = config.replace(policy=name, engine_mode=engine, rpm_limit=1.0 if name == "rpm" else None)
    return RunSpec(path, config, section, (*labels, ("policy", policy)), policy, RHO,
                   RPM_SHARE if name == "rpm" else None, is_detailed=False)


def _section(base: RunConfig, prefix: str, section: str, quick: bool) -> list[RunSpec]:
    labels = (("workload", base.workload),)
    specs = [_baseline(base, p, f"{prefix}/{p.replace('@', '-at-')}", section, labels) for p in BASELINES]
    for knobs in sweep(quick):
        config = base.replace(policy="equinox", policy_params=dict(knobs.params))
        path = f"{prefix}/" + knobs.label.replace(" ", "_").replace("=", "")
        specs.append(RunSpec(path, config, section, (*labels, ("policy", knobs.label)), knobs.label, RHO))
    return specs


def holistic_specs(quick: bool) -> list[RunSpec]:
    """Every run of `equinox experiment holistic` (quick: two scenarios, a three-point sweep, 120 s)."""
    duration = 120.0 if quick else 240.0
    gpu, model = MAIN_PLATFORM
    specs: list[RunSpec] = []
    for wl in SCENARIOS_QUICK if quick else SCENARIOS_FULL:
        base = RunConfig(workload=wl, gpu=gpu, model=model, duration_s=duration)
        specs += _section(base, f"{wl}/{model}@{gpu}", f"{wl}, {model}@{gpu} (fitted), {RHO:g} x capacity", quick)
    if quick:
        return specs
    for g in CROSS_GPUS:  # one cost-model family across the three GPUs; the fitted models beside it
        cost_models = ("roofline",) if g == gpu else ("roofline", "auto")
        for cm in cost_models:
            base = RunConfig(workload=CROSS_SCENARIO, gpu=g, model=model, duration_s=duration, cost_model=cm)
            kind = "roofline" if cm == "roofline" else "fitted"
            specs += _section(base, f"{CROSS_SCENARIO}/{model}@{g}-{kind}",
                              f"{CROSS_SCENARIO}, {model}@{g} ({kind}), {RHO:g} x capacity", quick)
    return specs
