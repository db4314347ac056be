"""Per-run figures (matplotlib, Agg, no pyplot global state): service, TTFT, counters, utilisation, batching."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equinox.errors import EquinoxError
from equinox.report import series
from equinox.report.load import RunData

DPI = 100
PANEL_W, PANEL_H = 5.2, 3.0  # inches per panel
TENANT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")
POLICY_COLOURS = {"equinox": "#d62728", "vtc": "#1f77b4", "vtc@slora": "#6baed6", "vtc-predict": "#17becf",
                  "fcfs": "#7f7f7f", "rpm": "#8c564b", "lcf": "#9467bd"}


class PlottingUnavailableError(EquinoxError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class Plot:
    """One written figure: file path, title and a one-line caption."""

    path: Path
    title: str
    caption: str


def new_figure(num_panels: int = 1, *, rows: int = 1, width: float | None = None) -> tuple[Any, list[Any]]:
    """A Figure (Agg canvas) with `num_panels` axes laid out in `rows` rows."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlottingUnavailableError(
            "plots need matplotlib, which is not installed; install it with `pip install matplotlib` "
            "(or `pip install equinox-sched[plots]`)") from None
    cols = -(-num_panels // rows)
    fig = Figure(figsize=(width or PANEL_W * cols, PANEL_H * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[num_panels:]:
        ax.set_visible(False)
    for ax in axes[:num_panels]:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    return fig, axes[:num_panels]


def save(fig: Any, path: Path) -> Path:
    """Write `fig` as PNG and release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    return path


def slug(text: str) -> str:
    """A file-name-safe version of `text`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def tenant_colour(tenants: Sequence[str]) -> Callable[[str], str]:
    """Stable colours for a run's tenants (sorted order)."""
    order = {t: i for i, t in enumerate(sorted(tenants))}
    return lambda t: TENANT_COLOURS[order.get(t, 0) % len(TENANT_COLOURS)]


def policy_colour(label: str, index: int) -> str:
    """Colour of a policy line (known policies fixed, others by position)."""
    base = label.split(" ", 1)[0]
    return POLICY_COLOURS.get(base, TENANT_COLOURS[(index + 4) % len(TENANT_COLOURS)])


def _legend(ax: Any, n: int) -> None:
    if n:
        ax.legend(fontsize=7, ncol=1 if n <= 5 else 2, loc="best", framealpha=0.8)


def _mark_arrivals_end(ax: Any, run: RunData) -> None:
    """A dashed line where the workload stops sending requests (later, only the backlog drains)."""
    wl = run.config.get("workload")
    end = wl.get("duration_s") if isinstance(wl, dict) else None
    if isinstance(end, (int, float)) and end > 0:
        ax.axvline(end, color="black", ls=":", lw=0.8, alpha=0.7)
        ax.annotate("arrivals end", (end, 1), xycoords=("data", "axes fraction"), xytext=(-3, -10),
                    textcoords="offset points", ha="right", fontsize=6, color="#444")


def _service_rate(run: RunData, path: Path) -> Plot | None:
    rate = series.service_rate(run)
    diff = series.accumulated_service_difference(run)
    if rate is None or diff is None:
        return None
    colour = tenant_colour(list(rate.values))
    fig, (a, b) = new_figure(2)
    for t, v in rate.values.items():
        a.plot(rate.times, v, label=t, color=colour(t), lw=1.2)
    _mark_arrivals_end(a, run)
    _mark_arrivals_end(b, run)
    a.set(title=f"service rate ({series.SMOOTH_S:.0f} s moving mean)", xlabel="time (s)",
          ylabel="weighted tokens/s")
    _legend(a, len(rate.values))
    for t, v in diff.values.items():
        b.plot(diff.times, v, label=t, color=colour(t), lw=1.2)
    b.axhline(0, color="black", lw=0.6)
    b.set(title="accumulated service minus tenant mean", xlabel="time (s)", ylabel="weighted tokens")
    _legend(b, len(diff.values))
    return Plot(save(fig, path), "Service per tenant",
                "Left: weighted service rate (prompt + 2 x output tokens, / weight). Right: each tenant's "
                "accumulated service minus the mean over tenants, as in VTC's figures; flat lines mean equal "
                "service.")


def _ttft_time(run: RunData, path: Path) -> Plot | None:
    points = series.ttft_points(run)
    if not points:
        return None
    colour = tenant_colour(list(points))
    fig, (ax,) = new_figure(1, width=PANEL_W * 1.4)
    for t, (arrival, ttft) in points.items():
        ax.scatter(arrival, ttft, s=4, alpha=0.6, color=colour(t), label=t, linewidths=0)
    ax.set(title="time to first token by arrival time", xlabel="arrival time (s)", ylabel="TTFT (s)")
    _legend(ax, len(points))
    return Plot(save(fig, path), "TTFT over time", "One dot per request that produced a first token.")


def _counters(run: RunData, path: Path) -> Plot | None:
    kinds = series.counters(run)
    if not kinds:
        return None
    tenants = sorted({t for s in kinds.values() for t in s.values})
    colour = tenant_colour(tenants)
    fig, axes = new_figure(len(kinds))
    for ax, (kind, s) in zip(axes, kinds.items(), strict=True):
        for t, v in s.values.items():
            ax.plot(s.times, v, label=t, color=colour(t), lw=1.1)
        _mark_arrivals_end(ax, run)
        ax.set(title=f"{kind.upper()} counter", xlabel="time (s)", ylabel="counter value")
        _legend(ax, len(s.values))
    return Plot(save(fig, path), "Fairness counters",
                "The policy's per-tenant counters sampled once per interval (VTC: virtual token counter; "
                "Equinox: UFC user fairness, RFC resource fairness, HF holistic score).")


def _utilisation(run: RunData, path: Path) -> Plot | None:
    u = series.utilisation(run)
    if u is None:
        return None
    fig, (ax,) = new_figure(1, width=PANEL_W * 1.4)
    ax.plot(u["time"], u["busy"], label="GPU busy fraction", color="#2ca02c", lw=1.2)
    if "mfu" in u:
        ax.plot(u["time"], u["mfu"], label="model-FLOPs utilisation", color="#d62728", lw=1.2)
    if "kv" in u:
        ax.plot(u["time"], u["kv"], label="KV cache in use", color="#1f77b4", lw=1.2)
    ax.set(title="GPU utilisation", xlabel="time (s)", ylabel="fraction", ylim=(0, 1.3))
    ax.legend(fontsize=7, loc="upper center", ncol=3, framealpha=0.9)
    _mark_arrivals_end(ax, run)
    missing = [n for n, k in (("MFU", "mfu"), ("KV use", "kv")) if k not in u]
    note = f" ({' and '.join(missing)} unknown: config.json lacks peak FLOP/s or KV capacity.)" if missing else ""
    return Plot(save(fig, path), "GPU busy, MFU and KV use",
                "Per-interval fraction of time computing, model FLOPs / peak, and KV blocks in use / capacity."
                + note)


def _batching(run: RunData, path: Path) -> Plot | None:
    b = series.batching(run)
    if b is None or "tokens" not in b:
        return None
    fig, (a, c) = new_figure(2)
    a.plot(b["time"], b["tokens"], label="tokens per iteration", color="#1f77b4", lw=1.1)
    if "budget" in b:
        a.plot(b["time"], b["budget"], label="token budget", color="#d62728", lw=1.1, ls="--")
    a.set(title="batch tokens and token budget", xlabel="time (s)", ylabel="tokens / iteration")
    _legend(a, 2)
    if "seqs" in b:
        c.plot(b["time"], b["seqs"], label="sequences per iteration", color="#2ca02c", lw=1.1)
    if "waiting" in b:
        c.plot(b["time"], b["waiting"], label="waiting requests", color="#7f7f7f", lw=1.0, alpha=0.8)
    _mark_arrivals_end(a, run)
    _mark_arrivals_end(c, run)
    c.set(title="batch size and queue", xlabel="time (s)", ylabel="count")
    _legend(c, 2)
    return Plot(save(fig, path), "Batch size and token budget",
                "Per-interval means over iterations; a moving token budget shows adaptive batching.")


RUN_PLOTS: tuple[tuple[str, Callable[[RunData, Path], Plot | None]], ...] = (
    ("service", _service_rate),
    ("ttft", _ttft_time),
    ("counters", _counters),
    ("utilisation", _utilisation),
    ("batching", _batching),
)


def run_plots(run: RunData, out_dir: Path) -> list[Plot]:
    """Every per-run figure the run's files allow, written under `out_dir`."""
    plots = []
    name = slug(run.label)
    for kind, make in RUN_PLOTS:
        plot = make(run, out_dir / f"run-{name}-{kind}.png")
        if plot is not None:
            plots.append(plot)
    return plots
