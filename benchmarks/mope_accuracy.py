"""MoPE accuracy on every built-in workload: each expert's error, next to VTC(predict)'s average.

    python benchmarks/mope_accuracy.py [--duration 300] [--gpu a100-80gb] [--markdown]

Each workload is simulated under Equinox on the engine's cost model (Vidur's fit on
A100-80GB by default), while MoPE's iteration expert starts from a *different* model
(the datasheet roofline) so its online correction has something to correct. Clients
send no max_tokens (`max_tokens` removed), so output length is a real prediction.

- output length: MAE, MAPE of the point estimate; calibration = share of requests
  whose actual output is <= the 0.9 quantile (target 0.90); `vtc-predict` is VTC's
  per-tenant moving average (EMA 0.1, prior 256) on the same admissions and finishes;
- TTFT: predicted at admission (waited + predicted prefill) vs actual;
- iteration time: roofline alone vs MoPE (roofline x online per-regime correction)
  vs the online least-squares expert that knows no cost model, against the engine;
- MFU: predicted for each executed batch vs actual.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from equinox.metrics.collector import Collector
from equinox.prediction.experts.iteration_time import IterationTimeExpert
from equinox.request import RequestView
from equinox.scheduling.interface import PolicyConfig
from equinox.scheduling.policies.equinox import EquinoxPolicy
from equinox.sim.backend import CostModelBackend
from equinox.sim.cost_models import build_cost_model, default_cost_model
from equinox.sim.engine import EngineConfig, make_engine
from equinox.sim.hardware import make_deployment
from equinox.sim.loop import Simulator
from equinox.types import StepReport
from equinox.workload import catalogue, load_workload


def errors(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """MAE and MAPE (%) of (predicted, actual) pairs."""
    if not pairs:
        return math.nan, math.nan
    mae = sum(abs(p - a) for p, a in pairs) / len(pairs)
    mape = 100 * sum(abs(p - a) / a for p, a in pairs if a > 0) / max(1, sum(1 for _, a in pairs if a > 0))
    return mae, mape


def evaluate(workload_name: str, gpu: str, model: str, duration: float) -> dict[str, float]:
    """Simulate one workload and score every expert."""
    wl = load_workload(workload_name, duration_s=duration, seed=1)
    requests = [dataclasses.replace(r, max_tokens=None) for r in wl.requests]
    dep = make_deployment(gpu, model)
    truth = default_cost_model(dep)
    believed = build_cost_model("roofline", dep)
    engine = EngineConfig(num_kv_blocks=dep.num_kv_blocks(16))
    pol = EquinoxPolicy(PolicyConfig(tenant_weights=dict(wl.tenant_weights)))
    pol.set_platform(dep.platform(believed))
    online = IterationTimeExpert(None)
    out_pairs: list[tuple[float, float]] = []
    vtc_pairs: list[tuple[float, float]] = []
    covered: list[bool] = []
    ttft_pairs: list[tuple[float, float]] = []
    iter_base: list[tuple[float, float]] = []
    iter_mope: list[tuple[float, float]] = []
    iter_online: list[tuple[float, float]] = []
    mfu_pairs: list[tuple[float, float]] = []
    pending: dict[str, tuple[float, float, float, float]] = {}
    ema: dict[str, float] = {}
    final = {r.request_id: r.num_generated_tokens for r in requests}

    inner_charge, inner_step, inner_first = pol.charge_admission, pol.on_step, pol.on_first_token

    def charge(req: RequestView) -> None:
        if req.request_id not in pol._admitted:
            p = pol.mope.predict_output(req.tenant, req.num_prompt_tokens, req.max_tokens)
            ttft = pol.predict_ttft(req)
            pending[req.request_id] = (p.mean, p.quantile, ema.get(req.tenant, 256.0), ttft + req.arrival_time)
        inner_charge(req)

    def step(report: StepReport) -> None:
        b = report.mean_batch  # folded decode runs are scored per iteration
        d = report.duration_s / report.num_steps
        iter_base.append((believed.iteration_time(b), d))
        iter_mope.append((pol.mope.predict_iteration_s(b), d))
        iter_online.append((online.predict(b), d))
        actual_mfu = dep.flops(b) / (d * dep.peak_flops)
        mfu_pairs.append((pol.mope.predict_mfu(b), actual_mfu))
        online.observe(b, d)
        inner_step(report)

    def first(req: RequestView, now: float) -> None:
        entry = pending.get(req.request_id)
        if entry is not None:
            ttft_pairs.append((entry[3] - req.arrival_time, now - req.arrival_time))
        inner_first(req, now)

    inner_finish = pol.on_finish

    def finish(req: RequestView, now: float) -> None:
        entry = pending.pop(req.request_id, None)
        actual = float(final[req.request_id])
        if entry is not None:
            out_pairs.append((entry[0], actual))
            covered.append(actual <= entry[1])
            vtc_pairs.append((entry[2], actual))
        prev = ema.get(req.tenant)
        ema[req.tenant] = actual if prev is None else prev + 0.1 * (actual - prev)
        inner_finish(req, now)

    pol.charge_admission, pol.on_step, pol.on_first_token, pol.on_finish = (  # type: ignore[method-assign]
        charge, step, first, finish)
    Simulator(requests, make_engine(engine, pol), CostModelBackend(truth), Collector()).run()
    skip = len(iter_mope) // 10  # score the correction after a short warm-up
    return {
        "n": len(out_pairs),
        "out_mae": errors(out_pairs)[0], "out_mape": errors(out_pairs)[1],
        "vtc_mae": errors(vtc_pairs)[0], "vtc_mape": errors(vtc_pairs)[1],
        "calib": sum(covered) / len(covered) if covered else math.nan,
        "ttft_mae": errors(ttft_pairs)[0], "ttft_mape": errors(ttft_pairs)[1],
        "it_base": errors(iter_base[skip:])[1], "it_mope": errors(iter_mope[skip:])[1],
        "it_online": errors(iter_online[skip:])[1], "mfu_mae": errors(mfu_pairs[skip:])[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--gpu", default="a100-80gb")
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--workloads", help="comma-separated (default: every suite and preset)")
    args = ap.parse_args()
    names = args.workloads.split(",") if args.workloads else [n for n, _ in catalogue()]
    started = time.time()
    print(f"MoPE accuracy, {args.model} on {args.gpu}, {args.duration:.0f} s of each workload, no max_tokens\n")
    print("| workload | requests | output MAE (MoPE) | output MAE (vtc-predict) | output MAPE % (MoPE / vtc-predict) "
          "| q0.9 coverage | TTFT MAE s | TTFT MAPE % | iter MAPE % roofline / MoPE / online-LS | MFU MAE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = evaluate(name, args.gpu, args.model, args.duration)
        print(f"| {name} | {r['n']} | {r['out_mae']:.1f} | {r['vtc_mae']:.1f} | "
              f"{r['out_mape']:.0f} / {r['vtc_mape']:.0f} | "
              f"{r['calib']:.2f} | {r['ttft_mae']:.3f} | {r['ttft_mape']:.0f} | "
              f"{r['it_base']:.1f} / {r['it_mope']:.1f} / {r['it_online']:.1f} | {r['mfu_mae']:.3f} |")
    print(f"\n({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
