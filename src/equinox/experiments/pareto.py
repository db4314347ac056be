"""Pareto views of the holistic experiment: Equinox's sweep against the baselines, and the claims check.

Per section (one scenario on one platform) three 2-D views, each with throughput in the legend:
user-side index U against VTC's token-service difference, resource-side index R against U, and mean
TTFT against the holistic index H. Sweep points are grey; the non-dominated ones in each view are
joined (the front); the baselines and Equinox's defaults are labelled points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from equinox.experiments.spec import RunSpec
from equinox.report import series
from equinox.report.load import RunData
from equinox.report.plots import Plot, new_figure, policy_colour, save, slug
from equinox.report.tables import Cell, Table

# Goals of issue 11 against VTC: H at least 13 % better, mean TTFT at least 60 % lower than VTC on the
# artifact engine, throughput at least VTC's (same engine and artifact engine).
GOAL_H_GAIN = 0.13
GOAL_TTFT_CUT = 0.60
REFERENCE_POINTS = ("vtc", "vtc@slora", "fcfs", "rpm", "equinox")
# (x key, y key, x is better when higher, y is better when higher, x label, y label)
VIEWS = (
    ("sd_mean", "user", False, True, "token-service difference (mean, lower is fairer)", "user-side index U"),
    ("user", "resource", True, True, "user-side index U", "resource-side index R"),
    ("holistic", "ttft_mean", True, False, "holistic index H", "mean TTFT s (lower is better)"),
)
Point = tuple[str, dict[str, float]]  # (variant, headline numbers)


def _sections(specs: Sequence[RunSpec], runs: Sequence[RunData]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for spec, run in zip(specs, runs, strict=True):
        out.setdefault(spec.section, []).append((spec.variant, series.headline(run)))
    return out


def front(points: Sequence[Point], x: str, y: str, x_up: bool, y_up: bool) -> list[Point]:
    """The non-dominated points of a 2-D view, sorted by x (NaN points are left out)."""
    sx, sy = (1.0 if x_up else -1.0), (1.0 if y_up else -1.0)
    ok = [p for p in points if not (math.isnan(p[1][x]) or math.isnan(p[1][y]))]
    kept = [p for p in ok if not any(
        sx * q[1][x] >= sx * p[1][x] and sy * q[1][y] >= sy * p[1][y]
        and (sx * q[1][x] > sx * p[1][x] or sy * q[1][y] > sy * p[1][y]) for q in ok)]
    return sorted(kept, key=lambda p: p[1][x])


def _tok(h: dict[str, float]) -> str:
    return "n/a" if math.isnan(h["tok_s"]) else f"{h['tok_s']:,.0f} tok/s"


def section_plot(section: str, points: Sequence[Point], plot_dir: Path) -> Plot:
    """The three views of one section in one figure."""
    fig, axes = new_figure(3)
    sweep = [p for p in points if p[0] not in REFERENCE_POINTS]
    toks = [p[1]["tok_s"] for p in sweep if not math.isnan(p[1]["tok_s"])]
    span = f"{min(toks):,.0f}-{max(toks):,.0f} tok/s" if toks else "n/a"
    for ax, (x, y, x_up, y_up, xl, yl) in zip(axes, VIEWS, strict=True):
        ax.scatter([p[1][x] for p in sweep], [p[1][y] for p in sweep], s=12, color="#bbbbbb",
                   label=f"equinox sweep ({len(sweep)} points, {span})")
        fr = [p for p in front(points, x, y, x_up, y_up) if p[0] not in REFERENCE_POINTS or p[0] == "equinox"]
        if fr:
            ax.plot([p[1][x] for p in fr], [p[1][y] for p in fr], color="#444444", lw=0.8, ls="--",
                    label="Equinox's front")
        for i, name in enumerate(REFERENCE_POINTS):
            for v, h in points:
                if v == name:
                    ax.scatter([h[x]], [h[y]], s=42, marker="*" if name == "equinox" else "o",
                               color=policy_colour(name, i), edgecolor="black", linewidth=0.5, zorder=3,
                               label=f"{name} ({_tok(h)})")
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel(yl, fontsize=8)
        ax.legend(fontsize=6, loc="best", framealpha=0.8)
    fig.suptitle(section, fontsize=9)
    path = save(fig, plot_dir / f"pareto-{slug(section)}.png")
    return Plot(path, f"Pareto views: {section}",
                "grey: Equinox's knob sweep; dashed: its non-dominated points; labelled: baselines and "
                "Equinox's defaults (star), each with its throughput")


def _ratio(a: float, b: float) -> float:
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def claims_table(sections: dict[str, list[Point]], variant: str = "equinox") -> Table:
    """Per section: the goals of issue 11 for `variant`, and the best holistic index the sweep reached."""
    rows: list[list[Cell]] = []
    for section, points in sections.items():
        by = dict(points)
        vtc, art, eq = by.get("vtc"), by.get("vtc@slora"), by.get(variant)
        if vtc is None or eq is None:
            continue
        art = art or {k: math.nan for k in eq}
        best = max((p for p in points if p[0] not in ("vtc", "vtc@slora", "fcfs", "rpm")),
                   key=lambda p: -1.0 if math.isnan(p[1]["holistic"]) else p[1]["holistic"])
        h_gain = _ratio(eq["holistic"], vtc["holistic"]) - 1
        ttft_cut = 1 - _ratio(eq["ttft_mean"], art["ttft_mean"])
        rows.append([section.split(",")[0] + " | " + section.split(",")[1].strip(), vtc["holistic"],
                     eq["holistic"], h_gain, ttft_cut, _ratio(eq["tok_s"], vtc["tok_s"]),
                     _ratio(eq["tok_s"], art["tok_s"]), _ratio(eq["sd_max"], vtc["sd_max"]),
                     best[0], best[1]["holistic"], _ratio(best[1]["holistic"], vtc["holistic"]) - 1])
    return Table(f"Claims check: {variant} against VTC (goals: H +{GOAL_H_GAIN:.0%}, TTFT -{GOAL_TTFT_CUT:.0%} "
                 "vs VTC on the artifact engine, throughput >= 1)", [
                     "scenario | platform", "H vtc", f"H {variant}", "H gain", "TTFT cut vs vtc@slora",
                     "tok/s vs vtc", "tok/s vs vtc@slora", "svc diff max vs vtc", "best H point",
                     "best H", "best H gain"], rows)


def sweep_table(sections: dict[str, list[Point]]) -> Table:
    """Every Equinox point across sections: mean H gain over VTC, worst throughput ratio, mean TTFT cut."""
    stats: dict[str, list[tuple[float, float, float, float, float]]] = {}
    for points in sections.values():
        by = dict(points)
        vtc, art = by.get("vtc"), by.get("vtc@slora")
        if vtc is None:
            continue
        for v, h in points:
            if v in ("vtc", "vtc@slora", "fcfs", "rpm"):
                continue
            stats.setdefault(v, []).append((
                _ratio(h["holistic"], vtc["holistic"]) - 1, _ratio(h["tok_s"], vtc["tok_s"]),
                1 - _ratio(h["ttft_mean"], art["ttft_mean"]) if art else math.nan,
                _ratio(h["sd_max"], vtc["sd_max"]), h["holistic"]))
    rows: list[list[Cell]] = []
    for v, xs in stats.items():
        def col(i: int, xs: list[tuple[float, float, float, float, float]] = xs) -> list[float]:
            return [x[i] for x in xs if not math.isnan(x[i])]
        gains, toks, cuts, sds = col(0), col(1), col(2), col(3)
        rows.append([v, len(xs), _mean(gains), min(gains, default=math.nan), min(toks, default=math.nan),
                     _mean(cuts), max(sds, default=math.nan)])
    rows.sort(key=lambda r: -r[2] if isinstance(r[2], float) and not math.isnan(r[2]) else 1e9)
    return Table("Equinox sweep across every section (sorted by mean H gain over VTC)", [
        "variant", "sections", "mean H gain", "worst H gain", "worst tok/s vs vtc", "mean TTFT cut vs vtc@slora",
        "worst svc diff max vs vtc"], rows)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def holistic_analysis(specs: Sequence[RunSpec], runs: Sequence[RunData], plot_dir: Path
                      ) -> tuple[list[Table], list[Plot]]:
    """Claims table, sweep ranking and one Pareto figure per section."""
    sections = _sections(specs, runs)
    plots = [section_plot(s, pts, plot_dir) for s, pts in sections.items()]
    return [claims_table(sections), sweep_table(sections)], plots
