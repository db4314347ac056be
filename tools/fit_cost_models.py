"""Regenerate src/equinox/sim/profiles/*.json from the measured data in ../shared/data.

Usage: python tools/fit_cost_models.py [--data DIR] [--out DIR]
Only fitted coefficients and small derived tables are written, each file with its source attribution.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from equinox.sim.cost_models import fitting, sources  # noqa: E402
from equinox.sim.cost_models.roofline import RooflineCostModel, RooflineParams  # noqa: E402
from equinox.sim.cost_models.store import deployment_key  # noqa: E402
from equinox.sim.hardware import make_deployment  # noqa: E402

VIDUR_SOURCE = {
    "repo": "microsoft/vidur",
    "commit": "7d47513363ec447a741ac5e47241580b47724fbf",
    "paths": [
        "data/profiling/compute/{a100,h100,a40}/<model>/mlp.csv",
        "data/profiling/network/{a100,h100}_dgx/all_reduce.csv",
    ],
    "licence": "MIT",
    "cite": "Agrawal et al., Vidur: A Large-Scale Simulation Framework for LLM Inference, MLSys 2024",
}
SPLITWISE_SOURCE = {
    "repo": "Mutinifni/splitwise-sim",
    "commit": "8f99e7dc9b407f4ce2488d03dd44c0b8b946dab0",
    "paths": ["data/perf_model.csv"],
    "licence": "MIT",
    "cite": "Patel et al., Splitwise: Efficient Generative LLM Inference Using Phase Splitting, ISCA 2024",
}
DISTSERVE_SOURCE = {
    "repo": "LLMServe/DistServe",
    "commit": "82831f1604cc6b10bebd360f6c437a07790dde9f",
    "paths": ["simdistserve/estimators/profile_data/profiler-a100-80g.distserve.json"],
    "licence": "Apache-2.0",
    "cite": "Zhong et al., DistServe: Disaggregating Prefill and Decoding, OSDI 2024",
}
VTC_SOURCE = {
    "repo": "Ying1123/VTC-artifact",
    "commit": "192c2e2014c69c8c6c699d7113c3822e4db632e6",
    "paths": ["fair_bench/cost_profile.json"],
    "licence": "Apache-2.0",
    "cite": "Sheng et al., Fairness in Serving Large Language Models, OSDI 2024",
}
TABLE_UNITS = (
    "seconds; t = overhead_s + L(tokens) + prefill_pair_s*prefill_attention_pairs "
    "+ decode_context_s*decode_context_tokens + prefill_seq_s*num_prefill_seqs, "
    "L piecewise-linear through (linear_tokens, linear_s)"
)


def _write(out: Path, name: str, payload: dict[str, Any]) -> None:
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(payload['deployments'])} deployments)")


def _with_dep(dep: sources.DeploymentId, entry: dict[str, Any]) -> dict[str, Any]:
    gpu, model, tp = dep
    return {"gpu": gpu, "model": model, "tensor_parallel": tp, **entry}


def _round(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def fit_roofline_and_vidur(data: Path, out: Path) -> RooflineParams:
    """Calibrate the roofline, then build the Vidur tables with roofline attention terms."""
    vidur = sources.load_vidur_linear(data)
    allreduce = sources.load_vidur_allreduce(data)
    params, diag = fitting.calibrate_roofline(vidur, allreduce)
    _write(
        out,
        "roofline",
        {
            "description": "Roofline efficiency constants; linear-op terms calibrated on Vidur operator profiles, "
            "all-reduce terms on Vidur's DGX all-reduce profiles; attention_efficiency, overhead_s and "
            "pcie_bandwidth are documented defaults (no measurement available).",
            "source": VIDUR_SOURCE,
            "fit": diag,
            "deployments": {"*": {k: float(f"{v:.6g}") for k, v in dataclasses.asdict(params).items()}},
        },
    )
    ar_fits = {key: fitting.fit_allreduce(points, key[1]) for key, points in allreduce.items()}
    entries = {}
    for dep, points in sorted(vidur.items()):
        roofline = RooflineCostModel(make_deployment(*dep), params)
        comm = fitting.comm_from_fit(dep, ar_fits.get((dep[0], dep[2])), roofline)
        xs, ys = fitting.vidur_table(points, comm)
        pair_s, ctx_s = roofline.attention_coefficients()
        entries[deployment_key(*dep)] = _with_dep(
            dep,
            {
                "linear_tokens": xs,
                "linear_s": _round(ys),
                "overhead_s": params.overhead_s,
                "prefill_pair_s": float(f"{pair_s:.6g}"),
                "decode_context_s": float(f"{ctx_s:.6g}"),
                "prefill_seq_s": 0.0,
            },
        )
    _write(
        out,
        "vidur",
        {
            "description": "Per-iteration linear-op time (all layers' projections, MLP, norms, rope, adds, "
            "embedding; medians of Vidur's measured per-layer operator times) plus measured all-reduce "
            "time for TP (roofline all-reduce on a40, which has no all-reduce profile); attention terms and "
            "overhead from the calibrated roofline because Vidur's attention.csv files are not in the snapshot.",
            "source": VIDUR_SOURCE,
            "gpu_mapping": sources.VIDUR_GPUS,
            "units": TABLE_UNITS,
            "deployments": entries,
        },
    )
    return params


def fit_phase_profile(
    name: str,
    observations: dict[sources.DeploymentId, list[sources.Observation]],
    source: dict[str, Any],
    out: Path,
    description: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Fit decode/prefill lines per deployment and write one profile."""
    entries = {}
    for dep, obs in sorted(observations.items()):
        if not sources.fits(dep):
            continue
        entry, dropped = fitting.fit_phase_entry(obs)
        entry = {
            k: (
                _round(v)
                if isinstance(v, list) and k == "linear_s"
                else float(f"{v:.6g}")
                if isinstance(v, float)
                else v
            )
            for k, v in entry.items()
        }
        entry["fit"] = {"num_points": len(obs), "dropped_artefacts": [fitting.artefact_id(o) for o in dropped]}
        entries[deployment_key(*dep)] = _with_dep(dep, entry)
    _write(
        out,
        name,
        {"description": description, "source": source, "units": TABLE_UNITS, **(extra or {}), "deployments": entries},
    )


def encode_distserve(data: Path, out: Path) -> None:
    """Copy DistServe's published coefficients (already a fitted model) with attribution."""
    entries = {}
    for dep, coefs in sorted(sources.load_distserve(data).items()):
        entries[deployment_key(*dep)] = _with_dep(dep, coefs)
    _write(
        out,
        "distserve",
        {
            "description": "DistServe's own fitted latency model for its engine: prefill_ms = a + b*sum(len) + "
            "c*sum(len^2); decode_ms = a + b*sum(context) + c*batch_size (small/large batch split at the threshold).",
            "source": DISTSERVE_SOURCE,
            "units": "milliseconds, coefficient order [a, b, c]",
            "deployments": entries,
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Fit every profile and write the JSON files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "equinox" / "sim" / "profiles")
    args = parser.parse_args(argv)
    data = sources.shared_data_dir(args.data)
    if data is None:
        print(f"no measured data at {args.data} (set EQUINOX_SHARED_DATA)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    fit_roofline_and_vidur(data, args.out)
    fit_phase_profile(
        "splitwise",
        sources.load_splitwise(data),
        SPLITWISE_SOURCE,
        args.out,
        "Llama-2-70B prompt_time (prefill) and token_time (decode step) measured on DGX-A100/H100, fitted as "
        "decode a+b*bs+c*ctx and prefill a+b*T+c*pairs+d*T^2 (relative least squares).",
    )
    fit_phase_profile(
        "vtc-a10g",
        sources.load_vtc_a10g(data),
        VTC_SOURCE,
        args.out,
        "Llama-7B on one A10G in S-LoRA (max_total_token_num=10000): batch prefill time and decode step time "
        "(per-request times x batch size / output steps); prefill intercept tied to decode, per-sequence term.",
        {"model_aliases": {"llama-2-7b": "llama-7b"}},
    )
    encode_distserve(data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
