"""The named experiment sets: paper, vtc-suites, load-sweep, alpha-beta (issue #6), holistic (issue 11)."""

from __future__ import annotations

from equinox.config import RunConfig
from equinox.errors import UnknownNameError
from equinox.experiments.holistic import holistic_specs
from equinox.experiments.pareto import holistic_analysis
from equinox.experiments.spec import ExperimentSet, RunSpec

# (gpu, model, tensor parallel): the paper's three platforms, plus a 70B model on several GPUs.
PAPER_PLATFORMS = (
    ("a10g", "llama-2-7b", 1),
    ("a100-80gb", "llama-2-13b", 1),
    ("h100-80gb", "llama-3-8b", 1),
    ("h100-80gb", "llama-2-70b", 4),
)
# sharegpt-like, chat-like (Azure conversation trace) and synthetic (VTC's Poisson short/long mix).
PAPER_WORKLOADS = ("sharegpt", "azure-conv", "poisson_short_long")
PAPER_POLICIES = ("equinox", "vtc", "fcfs", "rpm")
PAPER_RHO = 1.2  # offered load: 1.2 x saturated capacity, a loaded but not collapsed system
RPM_SHARE = 1.0  # RPM limit: each tenant may use its even share of capacity
DETAIL_PLATFORM = ("a100-80gb", "llama-2-13b", 1)
VTC_SUITES = ("overload", "proportional", "on_off_less", "on_off_overload", "poisson_short_long",
              "poisson_short_long_2", "increase", "dist_shift", "overload_weighted", "overload_multi")
SWEEP_PLATFORM = ("a100-80gb", "llama-2-7b", 1)
SWEEP_WORKLOADS = ("sharegpt", "poisson_short_long")
SWEEP_POLICIES = ("equinox", "vtc", "fcfs")
SWEEP_RHOS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
QUICK_SWEEP_RHOS = (0.5, 0.9, 1.25, 2.0)
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
QUICK_GRID = (0.0, 0.5, 1.0)


def _platform_name(gpu: str, model: str, tp: int) -> str:
    return f"{model}@{gpu}" + (f"x{tp}" if tp > 1 else "")


def _policy_spec(base: RunConfig, policy: str, path: str, section: str, labels: tuple[tuple[str, str], ...],
                 rho: float | None, is_detailed: bool) -> RunSpec:
    engine = "vllm"
    name = policy
    config = base
    if policy == "vtc@slora":  # VTC as its artifact ran it: S-LoRA engine, admission every 10 decode steps
        from equinox.sim.engine.slora import COMPARISON_MAX_REQ_TOTAL_LEN

        name, engine = "vtc", "slora"
        config = config.replace(max_req_total_len=COMPARISON_MAX_REQ_TOTAL_LEN)
    config = config.replace(policy=name, engine_mode=engine, rpm_limit=1.0 if name == "rpm" else None)
    return RunSpec(path=path, config=config, section=section, labels=(*labels, ("policy", policy)), variant=policy,
                   rho=rho, rpm_share=RPM_SHARE if name == "rpm" else None, is_detailed=is_detailed)


def _paper(quick: bool) -> list[RunSpec]:
    duration = 90.0 if quick else 300.0
    policies = PAPER_POLICIES if quick else (*PAPER_POLICIES, "vtc@slora")
    specs = []
    for gpu, model, tp in PAPER_PLATFORMS:
        platform = _platform_name(gpu, model, tp)
        # The A10G serves ~8x fewer requests/s: a longer trace gives it similar sample sizes.
        d = duration * (2.0 if gpu == "a10g" else 1.0)
        for wl in PAPER_WORKLOADS:
            base = RunConfig(workload=wl, gpu=gpu, model=model, tensor_parallel=tp, duration_s=d)
            for pol in policies:
                specs.append(_policy_spec(
                    base, pol, f"{platform}/{wl}/{pol}", f"{platform}, offered load {PAPER_RHO:g} x capacity",
                    (("workload", wl),), PAPER_RHO, (gpu, model, tp) == DETAIL_PLATFORM and wl == "sharegpt"))
    return specs


def _vtc_suites(quick: bool) -> list[RunSpec]:
    from equinox.scheduling.policy import policy_names

    # VTC's own setting: Llama-2-7B on an A10G, each suite at its published rates and length.
    policies = (*policy_names(), "vtc@slora")
    specs = []
    for suite in VTC_SUITES:
        base = RunConfig(workload=suite, gpu="a10g", model="llama-2-7b", duration_s=120.0 if quick else None)
        for pol in policies:
            specs.append(_policy_spec(base, pol, f"{suite}/{pol}", "VTC suites, llama-2-7b@a10g, published rates",
                                      (("suite", suite),), None, pol in ("vtc", "equinox")))
    return specs


def _load_sweep(quick: bool) -> list[RunSpec]:
    gpu, model, tp = SWEEP_PLATFORM
    rhos = QUICK_SWEEP_RHOS if quick else SWEEP_RHOS
    specs = []
    for wl in SWEEP_WORKLOADS:
        base = RunConfig(workload=wl, gpu=gpu, model=model, tensor_parallel=tp, duration_s=90.0 if quick else 240.0)
        for rho in rhos:
            for pol in SWEEP_POLICIES:
                specs.append(_policy_spec(
                    base, pol, f"{wl}/load-{rho:g}/{pol}", f"{wl} on {_platform_name(gpu, model, tp)}",
                    (("load (x capacity)", f"{rho:g}"),), rho, False))
    return specs


def _alpha_beta(quick: bool) -> list[RunSpec]:
    gpu, model, tp = SWEEP_PLATFORM
    grid = QUICK_GRID if quick else GRID
    specs = []
    for wl in SWEEP_WORKLOADS:
        base = RunConfig(workload=wl, gpu=gpu, model=model, tensor_parallel=tp, duration_s=90.0 if quick else 240.0)
        section = f"{wl} on {_platform_name(gpu, model, tp)}, offered load {PAPER_RHO:g} x capacity"
        for alpha in grid:
            for beta in grid:
                if alpha + beta == 0:
                    continue
                config = base.replace(policy="equinox", policy_params={"alpha": alpha, "beta": beta})
                specs.append(RunSpec(
                    path=f"{wl}/equinox-a{alpha:g}-b{beta:g}", config=config, section=section,
                    labels=(("alpha", f"{alpha:g}"), ("beta", f"{beta:g}")), variant=f"equinox α={alpha:g} β={beta:g}",
                    rho=PAPER_RHO))
        for pol in ("vtc", "fcfs"):
            specs.append(_policy_spec(base, pol, f"{wl}/{pol}", section, (("alpha", "-"), ("beta", "-")),
                                      PAPER_RHO, False))
    return specs


EXPERIMENTS: dict[str, ExperimentSet] = {
    s.name: s for s in (
        ExperimentSet(
            "paper", "Equinox vs VTC vs FCFS vs RPM on sharegpt-like, chat-like and synthetic workloads, on A10G, "
            "A100-80GB and H100-80GB, and Llama-2-70B on 4 x H100", _paper,
            comparisons=(("equinox", "vtc"), ("equinox", "fcfs"), ("equinox", "vtc@slora"))),
        ExperimentSet("vtc-suites", "every VTC suite under every baseline on VTC's own platform (Llama-2-7B, A10G)",
                      _vtc_suites, comparisons=(("equinox", "vtc"), ("equinox", "vtc@slora"))),
        ExperimentSet("load-sweep", "offered load scaled from light to past saturation, per policy", _load_sweep,
                      comparisons=(("equinox", "vtc"),), max_scenarios=0),
        ExperimentSet("alpha-beta", "Equinox's fairness/throughput surface as alpha and beta move", _alpha_beta,
                      max_scenarios=0),
        ExperimentSet(
            "holistic", "scenarios where user-side and resource-side fairness disagree (prefill- vs decode-heavy, "
            "long context, bursty vs steady, weighted, LMSYS-shaped; one mix on A10G, A100 and H100), "
            "Equinox's knobs swept against VTC, FCFS, RPM and VTC on its artifact engine", holistic_specs,
            comparisons=(("equinox", "vtc"), ("equinox", "vtc@slora")), max_scenarios=0,
            analyse=holistic_analysis),
    )
}


def experiment_names() -> list[str]:
    """Names accepted by `equinox experiment`."""
    return list(EXPERIMENTS)


def get_experiment(name: str) -> ExperimentSet:
    """The experiment set called `name`."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise UnknownNameError("experiment", name, experiment_names()) from None
