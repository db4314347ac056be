"""How runs are grouped and named in a report: scenario (what was run) and variant (which policy)."""

from __future__ import annotations

from collections.abc import Sequence

from equinox.report import series
from equinox.report.load import RunData


def variant(run: RunData) -> str:
    """What distinguishes a run inside its scenario: policy, engine and explicitly set parameters."""
    if run.meta.get("variant"):
        return str(run.meta["variant"])
    params = run.run_config.get("policy_params") or {}
    extra = " ".join(f"{_short(k)}={v}" for k, v in sorted(params.items()))
    rpm = run.run_config.get("rpm_limit")
    if run.run_config.get("policy") == "rpm" and rpm:
        extra = f"{rpm:g}/min " + extra
    return f"{run.policy} {extra}".strip()


def _short(key: str) -> str:
    return {"alpha": "α", "beta": "β"}.get(key, key)


def load_level(run: RunData) -> tuple[float, str]:
    """The run's load on a comparable axis: capacity multiple when an experiment recorded it, else req/s."""
    rho = run.meta.get("rho")
    if isinstance(rho, (int, float)):
        return float(rho), "offered load (x saturated capacity)"
    return series.offered_load(run), "offered load (requests/s)"


def scenario_key(run: RunData) -> str:
    """Runs with the same key differ only in policy: they are compared side by side."""
    if run.meta.get("scenario"):
        return str(run.meta["scenario"])
    cfg = run.run_config
    if not cfg:
        return f"{run.label} (no config.json)"
    rho = run.meta.get("rho")
    parts = [run.workload, run.deployment,
             f"load {rho:g}x capacity" if isinstance(rho, (int, float)) else f"rate x{cfg.get('rate_scale', 1):g}"]
    if cfg.get("duration_s"):
        parts.append(f"{cfg['duration_s']:g} s")
    if cfg.get("seed"):
        parts.append(f"seed {cfg['seed']}")
    if cfg.get("num_tenants"):
        parts.append(f"{cfg['num_tenants']} tenants")
    if cfg.get("tenant_weights"):
        parts.append("weights " + ",".join(f"{t}={w:g}" for t, w in sorted(cfg["tenant_weights"].items())))
    return " | ".join(parts)


def scenarios(runs: Sequence[RunData]) -> dict[str, list[RunData]]:
    """Runs grouped by scenario, in first-seen order."""
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(scenario_key(run), []).append(run)
    return groups
