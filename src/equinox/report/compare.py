"""Cross-run grouping and figures: TTFT CDFs per policy, policy bars, throughput vs load, alpha/beta trade-off."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from equinox.report import series
from equinox.report.groups import load_level, scenarios, variant
from equinox.report.load import RunData
from equinox.report.plots import PANEL_W, Plot, new_figure, policy_colour, save, slug
from equinox.report.tables import fmt

MAX_CDF_TENANTS = 4  # more tenants: one "all requests" panel only


def ttft_cdf(name: str, runs: Sequence[RunData], path: Path) -> Plot | None:
    """TTFT CDF of all requests and of each tenant, one line per policy."""
    per_run = [(variant(r), series.ttft_points(r)) for r in runs]
    per_run = [(v, p) for v, p in per_run if p]
    if not per_run:
        return None
    tenants = sorted({t for _, p in per_run for t in p})
    panels = ["all requests"] + (tenants if len(tenants) <= MAX_CDF_TENANTS else [])
    fig, axes = new_figure(len(panels), rows=1 if len(panels) <= 3 else 2)
    all_values = np.concatenate([v for _, p in per_run for _, v in p.values()])
    positive = all_values[all_values > 0]
    use_log = len(positive) > 0 and positive.max() / max(positive.min(), 1e-9) > 100
    for ax, panel in zip(axes, panels, strict=True):
        for i, (label, points) in enumerate(per_run):
            if panel == "all requests":
                values = np.concatenate([v for _, v in points.values()])
            elif panel in points:
                values = points[panel][1]
            else:
                continue
            values = np.sort(values)
            if not len(values):
                continue
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label,
                    color=policy_colour(label, i), lw=1.3)
        ax.set(title=f"TTFT CDF: {panel}", xlabel="TTFT (s)", ylabel="fraction of requests", ylim=(0, 1.02))
        if use_log:
            ax.set_xscale("log")
        ax.legend(fontsize=7, loc="lower right")
    return Plot(save(fig, path), f"TTFT CDF — {name}",
                "Cumulative distribution of time to first token, all requests and per tenant, one line per policy.")


_BARS = (("tok_s", "throughput (tok/s)"), ("ttft_mean", "mean TTFT (s)"), ("jain", "Jain's fairness index"),
         ("holistic", "holistic fairness index"), ("busy", "GPU busy fraction"))


def policy_bars(name: str, runs: Sequence[RunData], path: Path) -> Plot | None:
    """Headline numbers side by side for the policies of one scenario."""
    if len(runs) < 2:
        return None
    labels = [variant(r) for r in runs]
    heads = [series.headline(r) for r in runs]
    fig, axes = new_figure(len(_BARS), rows=1, width=PANEL_W * 0.8 * len(_BARS))
    x = np.arange(len(runs))
    for ax, (key, title) in zip(axes, _BARS, strict=True):
        values = [h[key] for h in heads]
        ax.bar(x, [0 if math.isnan(v) else v for v in values],
               color=[policy_colour(lab, i) for i, lab in enumerate(labels)])
        for xi, v in zip(x, values, strict=True):
            ax.annotate("n/a" if math.isnan(v) else fmt(v), (xi, 0 if math.isnan(v) else v),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.grid(False, axis="x")
    return Plot(save(fig, path), f"Policies side by side — {name}",
                "Throughput, mean TTFT, Jain's index (mean over 60 s windows), the holistic fairness index "
                "(0.4 user + 0.4 resource + 0.2 isolation; docs/algorithm.md) and GPU busy fraction.")


def load_curves(runs: Sequence[RunData], path: Path) -> Plot | None:
    """Throughput and TTFT p90 against offered load, one line per policy, one column per workload/platform."""
    curves: dict[str, dict[str, list[tuple[float, dict[str, float]]]]] = defaultdict(lambda: defaultdict(list))
    axis_label = ""
    for run in runs:
        level, axis_label = load_level(run)
        if math.isnan(level):
            continue
        curves[f"{run.workload} | {run.deployment}"][variant(run)].append((level, series.headline(run)))
    groups = {g: c for g, c in curves.items() if any(len({x for x, _ in pts}) >= 2 for pts in c.values())}
    if not groups:
        return None
    fig, axes = new_figure(2 * len(groups), rows=2)
    cols = len(groups)
    for j, (group, by_policy) in enumerate(groups.items()):
        top, bottom = axes[j], axes[cols + j]
        for i, (label, pts) in enumerate(sorted(by_policy.items())):
            pts.sort(key=lambda p: p[0])
            xs = [p[0] for p in pts]
            top.plot(xs, [p[1]["tok_s"] for p in pts], marker="o", ms=3, label=label, color=policy_colour(label, i))
            bottom.plot(xs, [p[1]["ttft_p90"] for p in pts], marker="o", ms=3, label=label,
                        color=policy_colour(label, i))
        top.set(xlabel=axis_label, ylabel="tok/s")
        top.set_title(f"throughput vs load\n{group}", fontsize=9)
        bottom.set(xlabel=axis_label, ylabel="TTFT p90 (s)")
        bottom.set_title(f"TTFT p90 vs load\n{group}", fontsize=9)
        bottom.set_yscale("symlog", linthresh=1.0)
        top.legend(fontsize=7)
    return Plot(save(fig, path), "Throughput and latency vs load",
                "Served tokens/s and 90th-percentile TTFT as the offered load grows; throughput flattens at "
                "saturation.")


def _alpha_beta(run: RunData) -> tuple[float, float] | None:
    if run.run_config.get("engine_mode", "vllm") != "vllm":
        return None
    p = run.params()  # alpha and beta exist for policies whose parameters have them (the registry says)
    try:
        return float(p["alpha"]), float(p["beta"])
    except (KeyError, TypeError, ValueError):
        return None


def alpha_beta(runs: Sequence[RunData], path: Path) -> Plot | None:
    """Fairness/throughput trade-off of Equinox runs that differ in alpha and beta, per scenario."""
    groups: dict[str, list[tuple[tuple[float, float], dict[str, float]]]] = defaultdict(list)
    baselines: dict[str, list[tuple[str, dict[str, float]]]] = defaultdict(list)
    for run in runs:
        ab = _alpha_beta(run)
        key = f"{run.workload} | {run.deployment}" + (f" | load {run.meta['rho']:g}x" if "rho" in run.meta else "")
        if ab is None:
            baselines[key].append((variant(run), series.headline(run)))
        else:
            groups[key].append((ab, series.headline(run)))
    groups = {k: v for k, v in groups.items() if len({ab for ab, _ in v}) >= 2}
    if not groups:
        return None
    fig, axes = new_figure(3 * len(groups), rows=len(groups))
    for j, (key, pts) in enumerate(groups.items()):
        ax_sd, ax_jain, ax_ttft = axes[3 * j: 3 * j + 3]
        ratio = np.array([b / (a + b) if a + b > 0 else 0.0 for (a, b), _ in pts])
        for ax, (xk, xl), (yk, yl) in (
            (ax_sd, ("sd_mean", "service difference (mean, lower = fairer)"), ("tok_s", "tok/s")),
            (ax_jain, ("jain", "Jain's index (higher = fairer)"), ("tok_s", "tok/s")),
            (ax_ttft, ("sd_mean", "service difference (mean)"), ("ttft_mean", "mean TTFT (s)")),
        ):
            xs = np.array([h[xk] for _, h in pts])
            ys = np.array([h[yk] for _, h in pts])
            sc = ax.scatter(xs, ys, c=ratio, cmap="viridis", vmin=0, vmax=1, s=28, zorder=3)
            for ((a, b), _), x, y in zip(pts, xs, ys, strict=True):
                if np.isfinite(x) and np.isfinite(y):
                    ax.annotate(f"{a:g}/{b:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            for i, (label, h) in enumerate(baselines.get(key, [])):
                if np.isfinite(h[xk]) and np.isfinite(h[yk]):
                    ax.scatter([h[xk]], [h[yk]], marker="x", s=40, color=policy_colour(label, i), label=label,
                               zorder=4)
            ax.set(xlabel=xl, ylabel=yl)
            ax.set_title(key, fontsize=9)
            ax.ticklabel_format(axis="both", style="plain", useOffset=False)
            if baselines.get(key):
                ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax_ttft, label="β / (α + β)")
    return Plot(save(fig, path), "Fairness / throughput trade-off as alpha and beta move",
                "Each dot is one Equinox run labelled α/β, coloured by the share of the resource counter; "
                "crosses are baseline policies on the same workload and platform.")


_SURFACE = (("tok_s", "throughput (tok/s)", "viridis"), ("ttft_mean", "mean TTFT (s)", "viridis_r"),
            ("sd_mean", "service difference (mean)", "viridis_r"), ("jain", "Jain's index", "viridis"))


def alpha_beta_surface(runs: Sequence[RunData], path: Path) -> Plot | None:
    """Heatmaps over the alpha x beta grid, one row per workload/platform (the tuning surface)."""
    grids: dict[str, dict[tuple[float, float], dict[str, float]]] = defaultdict(dict)
    for run in runs:
        ab = _alpha_beta(run)
        if ab is not None:
            grids[f"{run.workload} | {run.deployment}"][ab] = series.headline(run)
    grids = {k: g for k, g in grids.items()
             if len({a for a, _ in g}) >= 2 and len({b for _, b in g}) >= 2}
    if not grids:
        return None
    fig, axes = new_figure(len(_SURFACE) * len(grids), rows=len(grids))
    for j, (key, grid) in enumerate(grids.items()):
        alphas = sorted({a for a, _ in grid})
        betas = sorted({b for _, b in grid})
        for ax, (metric, title, cmap) in zip(axes[j * len(_SURFACE):], _SURFACE, strict=False):
            z = np.full((len(alphas), len(betas)), np.nan)
            for (a, b), h in grid.items():
                z[alphas.index(a), betas.index(b)] = h[metric]
            im = ax.imshow(z, origin="lower", cmap=cmap, aspect="auto")
            for (ia, ib), v in np.ndenumerate(z):
                if np.isfinite(v):
                    ax.text(ib, ia, fmt(float(v)), ha="center", va="center", fontsize=7, color="white",
                            path_effects=_outline())
            ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
            ax.set(xlabel="β (resource counter)", ylabel="α (user counter)")
            ax.set_title(f"{title}\n{key}", fontsize=9)
            ax.grid(False)
            bar = fig.colorbar(im, ax=ax, shrink=0.8)
            bar.formatter.set_useOffset(False)
            bar.update_ticks()
    return Plot(save(fig, path), "Alpha/beta tuning surface",
                "Equinox's headline numbers over the α x β grid (blank: not run, e.g. α = β = 0).")


def _outline() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]


def comparison_plots(runs: Sequence[RunData], out_dir: Path, *, max_scenarios: int | None = None) -> list[Plot]:
    """Every cross-run figure the runs allow."""
    plots: list[Plot] = []
    for plot in (load_curves(runs, out_dir / "load-curves.png"), alpha_beta(runs, out_dir / "alpha-beta.png"),
                 alpha_beta_surface(runs, out_dir / "alpha-beta-surface.png")):
        if plot is not None:
            plots.append(plot)
    groups = list(scenarios(runs).items())
    for name, group in groups[:max_scenarios]:
        for kind, make in (("cdf", ttft_cdf), ("bars", policy_bars)):
            made = make(name, group, out_dir / f"scenario-{slug(name)}-{kind}.png")
            if made is not None:
                plots.append(made)
    return plots
