"""Print each cost model's error (MAPE, max APE) against every measured profile it can be compared with.

Usage: python benchmarks/cost_model_error.py [--markdown]
Data: ../shared/data next to the repository, or $EQUINOX_SHARED_DATA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from equinox.errors import ConfigError  # noqa: E402
from equinox.sim.cost_models import (  # noqa: E402
    build_cost_model,
    fitting,
    sources,
)
from equinox.sim.cost_models.distserve import DistServeCostModel  # noqa: E402
from equinox.sim.cost_models.fitted import TableCostModel, profile_entry, table_from_entry  # noqa: E402
from equinox.sim.cost_models.roofline import RooflineCostModel, calibrated_params  # noqa: E402
from equinox.sim.hardware import Deployment, make_deployment  # noqa: E402
from equinox.types import BatchShape  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
Obs = sources.Observation


@dataclass(frozen=True)
class Row:
    """One line of the error table."""

    model: str
    reference: str
    scope: str
    split: str
    num_points: int
    mape: float
    max_ape: float


def _pooled(pairs: Sequence[tuple[float, float]]) -> tuple[int, float, float]:
    mape, max_ape = fitting.ape_stats(pairs)
    return len(pairs), mape, max_ape


def _dep(dep: sources.DeploymentId) -> Deployment:
    return make_deployment(*dep)


def _by_gpu(deps: Sequence[sources.DeploymentId]) -> dict[str, list[sources.DeploymentId]]:
    groups: dict[str, list[sources.DeploymentId]] = defaultdict(list)
    for dep in deps:
        groups[dep[0]].append(dep)
    return dict(sorted(groups.items()))


def vidur_rows(data: Path) -> list[Row]:
    """Roofline and the fitted Vidur tables against Vidur's linear-op (+ all-reduce) times."""
    vidur = sources.load_vidur_linear(data)
    allreduce = sources.load_vidur_allreduce(data)
    ar_fits = {key: fitting.fit_allreduce(points, key[1]) for key, points in allreduce.items()}
    rows = []
    for gpu, deps in _by_gpu(list(vidur)).items():
        roof: list[tuple[float, float]] = []
        table_in: list[tuple[float, float]] = []
        table_out: list[tuple[float, float]] = []
        for dep in deps:
            roofline = RooflineCostModel(_dep(dep), calibrated_params())
            comm = fitting.comm_from_fit(dep, ar_fits.get((dep[0], dep[2])), roofline)
            table = build_cost_model("vidur", _dep(dep))
            assert isinstance(table, TableCostModel)
            knots = set(fitting.VIDUR_KNOTS)
            for n, t in vidur[dep]:
                roof.append((roofline.linear_time_s(n, include_comm=False), t))
                target = table_in if n in knots else table_out
                target.append((table.linear_time_s(n), t + comm(n)))
        scope = f"{gpu}, {len(deps)} deployments"
        rows.append(Row("roofline", "vidur linear ops", scope, "all", *_pooled(roof)))
        rows.append(Row("vidur", "vidur linear ops + all-reduce", scope, "knots (in-sample)", *_pooled(table_in)))
        rows.append(Row("vidur", "vidur linear ops + all-reduce", scope, "between knots", *_pooled(table_out)))
    return rows


def _phase_rows(
    name: str, reference: str, raw: dict[sources.DeploymentId, list[Obs]], others: Sequence[str]
) -> list[Row]:
    """Measured points minus those the fit recorded as artefacts (counted in the scope column)."""
    rows = []
    observations = {}
    num_artefacts = 0
    for dep, obs in raw.items():
        try:
            entry = profile_entry(name, _dep(dep))
        except ConfigError:
            continue
        observations[dep] = fitting.without_artefacts(obs, entry)
        num_artefacts += len(obs) - len(observations[dep])
    for gpu, deps in _by_gpu([d for d in observations if sources.fits(d)]).items():
        for phase in ("prefill", "decode"):
            scope = f"{gpu} {phase}, {len(deps)} deployments"
            if num_artefacts:
                scope += " (fit artefacts excluded)"
            for model_name in ("roofline", *others):
                pairs = []
                for dep in deps:
                    try:
                        model = build_cost_model(model_name, _dep(dep))
                    except ConfigError:
                        continue
                    pairs += [
                        (model.iteration_time(o.batch), o.measured_s) for o in observations[dep] if o.phase == phase
                    ]
                if pairs:
                    rows.append(Row(model_name, reference, scope, "all", *_pooled(pairs)))
            in_pairs, out_pairs = [], []
            for dep in deps:
                model = build_cost_model(name, _dep(dep))
                in_pairs += [
                    (model.iteration_time(o.batch), o.measured_s) for o in observations[dep] if o.phase == phase
                ]
                train, test = fitting.holdout_split(observations[dep])
                entry, _ = fitting.fit_phase_entry(train)
                refit = table_from_entry(name, _dep(dep), entry)
                out_pairs += [(refit.iteration_time(o.batch), o.measured_s) for o in test if o.phase == phase]
            rows.append(Row(name, reference, scope, "in-sample", *_pooled(in_pairs)))
            rows.append(Row(name, reference, scope, "held-out 1/5", *_pooled(out_pairs)))
    return rows


def _distserve_grid() -> list[tuple[str, BatchShape]]:
    grid = [("prefill", sources.prefill_batch(p, bs)) for p in (128, 512, 2048) for bs in (1, 4)]
    grid += [("decode", sources.decode_batch(bs, ctx)) for bs in (1, 8, 32, 128) for ctx in (256, 1024)]
    return grid


def _distserve_raw(coefs: dict[str, list[float]], threshold: int) -> Callable[[str, BatchShape], float]:
    def predict(phase: str, b: BatchShape) -> float:
        if phase == "prefill":
            a, bb, c = coefs["prefill"]
            return (a + bb * b.num_prefill_tokens + c * (2 * b.prefill_attention_pairs - b.num_prefill_tokens)) / 1e3
        key = "decoding_smallbs" if b.num_decode_seqs < threshold else "decoding_largebs"
        a, bb, c = coefs[key]
        return (a + bb * b.decode_context_tokens + c * b.num_decode_seqs) / 1e3

    return predict


def distserve_rows(data: Path) -> list[Row]:
    """DistServe is a published fit, not data: compare our encoding and the roofline on a batch grid."""
    rows = []
    published = sources.load_distserve(data)
    for phase in ("prefill", "decode"):
        enc, roof = [], []
        for dep, coefs in sorted(published.items()):
            raw = _distserve_raw(coefs, int(coefs["decoding_large_small_bs_threshold"]))  # type: ignore[arg-type,call-overload]
            ours = build_cost_model("distserve", _dep(dep))
            assert isinstance(ours, DistServeCostModel)
            roofline = build_cost_model("roofline", _dep(dep))
            for ph, batch in _distserve_grid():
                if ph == phase:
                    enc.append((ours.iteration_time(batch), raw(ph, batch)))
                    roof.append((roofline.iteration_time(batch), raw(ph, batch)))
        scope = f"a100-80gb {phase}, {len(published)} deployments, grid"
        rows.append(Row("distserve", "distserve published fit", scope, "encoding check", *_pooled(enc)))
        rows.append(Row("roofline", "distserve published fit", scope, "grid", *_pooled(roof)))
    return rows


def collect(data: Path) -> list[Row]:
    """Every comparison the measured data allows."""
    rows = vidur_rows(data)
    rows += _phase_rows("splitwise", "splitwise measured", sources.load_splitwise(data), ("vidur",))
    rows += _phase_rows("vtc-a10g", "vtc a10g measured", sources.load_vtc_a10g(data), ())
    rows += distserve_rows(data)
    return rows


HEADER = ("model", "reference", "scope", "split", "n", "MAPE %", "max APE %")


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.model,
        row.reference,
        row.scope,
        row.split,
        str(row.num_points),
        f"{row.mape:.1f}",
        f"{row.max_ape:.1f}",
    )


def render(rows: Sequence[Row], markdown: bool) -> str:
    """The table as aligned text or Markdown."""
    cells = [HEADER, *(_cells(r) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("---" if i < 4 else "---:" for i in range(len(HEADER))) + "|")
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(c[i].ljust(widths[i]) if i < 4 else c[i].rjust(widths[i]) for i in range(len(c))) for c in cells
    )


def main(argv: list[str] | None = None) -> int:
    """Print the error table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table for docs/results.md")
    args = parser.parse_args(argv)
    data = sources.shared_data_dir(DEFAULT_DATA)
    if data is None:
        print(f"measured data not found at {DEFAULT_DATA}; set {sources.ENV_SHARED_DATA} to the shared/data folder")
        return 1
    rows = collect(data)
    print(render(rows, args.markdown))
    mapes = [r.mape for r in rows if r.model == "roofline"]
    print(f"\nroofline median MAPE over {len(mapes)} comparisons: {statistics.median(mapes):.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
