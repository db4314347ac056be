"""Sim-to-real: one multi-tenant workload through real vLLM-CPU and through the calibrated simulator.

Starts vLLM's OpenAI server (CPU, tiny random Llama, Equinox plug-in with the chosen policy),
calibrates the simulator's cost model on it from the engine's own step log (or loads a saved
calibration), replays a small open-loop workload (a bursty heavy tenant, a steady medium and
a light one; exact output lengths), then runs the same requests (same send times, token
counts, engine limits, policy) through the simulator and prints per-tenant TTFT, end-to-end
latency and throughput side by side with the error:

    .venv-vllm/bin/python benchmarks/sim_to_real.py --policy vtc            # ~2 minutes on 2 cores
    .venv-vllm/bin/python benchmarks/sim_to_real.py --policy fcfs --markdown --calibration runs/cal.json

The calibration is specific to the machine it was measured on; `--calibration PATH` reuses
one when PATH exists (and writes it there otherwise). Arguments after `--` go to vLLM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from equinox.integrations.vllm.calibration import (
    ReplayOutcome,
    calibrate,
    engine_config,
    engine_from_config,
    engine_ttfts,
    read_step_log,
    replay_requests,
    simulate_replay,
    step_samples,
    sweep_plan,
    words_prompt,
)
from equinox.integrations.vllm.launcher import ServeSpec, VllmServer, free_port
from equinox.integrations.vllm.loadgen import PlannedRequest, RequestResult, run_plan, send_completion
from equinox.integrations.vllm.settings import settings_from_dict
from equinox.sim.cost_models.calibrated import Calibration, load_calibration, save_calibration

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
BASE_ARGS = ("--enforce-eager", "--max-model-len", "1024")
PLUGIN_CONFIG = 'tenant_weights = { heavy = 1.0, medium = 1.0, light = 1.0 }\n[metrics]\nlog_interval_s = 60.0\n'


@dataclass(frozen=True)
class TenantLoad:
    """One tenant of the workload: prompt/output lengths and its arrival pattern."""

    tenant: str
    prompt_words: int
    max_tokens: int
    rate_per_s: float = 0.0  # Poisson arrivals
    burst_size: int = 0  # or bursts of this many requests ...
    burst_every_s: float = 0.0  # ... this often (first at burst_every_s / 2)


WORKLOAD = (
    TenantLoad("heavy", prompt_words=512, max_tokens=96, burst_size=24, burst_every_s=8.0),
    TenantLoad("medium", prompt_words=192, max_tokens=64, rate_per_s=1.0),
    TenantLoad("light", prompt_words=48, max_tokens=32, rate_per_s=2.0),
)


def workload_plan(duration_s: float, seed: int = 0, loads: Sequence[TenantLoad] = WORKLOAD) -> list[PlannedRequest]:
    """Open-loop arrivals over `duration_s` (seeded), sorted by send time; every request streamed."""
    rng = random.Random(seed)
    plan: list[PlannedRequest] = []
    for load in loads:
        times: list[float] = []
        if load.rate_per_s > 0:
            t = rng.expovariate(load.rate_per_s)
            while t < duration_s:
                times.append(t)
                t += rng.expovariate(load.rate_per_s)
        if load.burst_size > 0:
            t = load.burst_every_s / 2
            while t < duration_s:
                times += [t + 0.002 * k for k in range(load.burst_size)]
                t += load.burst_every_s
        plan += [PlannedRequest(load.tenant, round(t, 4), words_prompt(load.prompt_words, rng.randrange(1000)),
                                load.max_tokens) for t in times]
    return sorted(plan, key=lambda r: r.start_s)


@dataclass(frozen=True)
class Row:
    """Real versus simulated figures of one tenant (or `all`)."""

    tenant: str
    num_requests: int
    real_ttft_s: float
    sim_ttft_s: float
    real_e2e_s: float
    sim_e2e_s: float
    real_tput: float  # output tokens/s over the tenant's span (first send to last token)
    sim_tput: float

    @staticmethod
    def error(real: float, sim: float) -> float:
        """Relative error of the simulator, percent."""
        return (sim - real) / real * 100.0 if real else math.nan


def _tput(sends: list[float], finishes: list[float], tokens: int) -> float:
    span = max(finishes) - min(sends)
    return tokens / span if span > 0 else math.nan


def compare(real: Sequence[RequestResult], sim: Sequence[ReplayOutcome]) -> list[Row]:
    """Per-tenant rows plus `all`, in tenant order of first appearance."""
    ok = [r for r in real if r.is_ok]
    t0 = min(r.send_time for r in ok)
    tenants = list(dict.fromkeys(str(r.tenant) for r in ok))
    rows = []
    for tenant in [*tenants, "all"]:
        rs = [r for r in ok if tenant in ("all", r.tenant)]
        ss = [s for s in sim if tenant in ("all", s.tenant)]
        rows.append(Row(
            tenant, len(rs),
            statistics.fmean(r.ttft_s or 0.0 for r in rs), statistics.fmean(s.ttft_s for s in ss),
            statistics.fmean(r.finish_time - r.send_time for r in rs), statistics.fmean(s.e2e_s for s in ss),
            _tput([r.send_time - t0 for r in rs], [r.token_times[-1] - t0 for r in rs],
                  sum(r.num_output_tokens for r in rs)),
            _tput([s.send_time for s in ss], [s.finish_time for s in ss], sum(s.num_output_tokens for s in ss)),
        ))
    return rows


def _triple(real: float, sim: float) -> list[str]:
    return [f"{real:.1f}", f"{sim:.1f}", f"{Row.error(real, sim):+.1f}"]


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The comparison table (plain text or Markdown)."""
    head = ["tenant", "reqs", "real TTFT ms", "sim TTFT ms", "err %", "real E2E ms", "sim E2E ms", "err %",
            "real tok/s", "sim tok/s", "err %"]
    body = [[r.tenant, str(r.num_requests),
             *_triple(r.real_ttft_s * 1e3, r.sim_ttft_s * 1e3), *_triple(r.real_e2e_s * 1e3, r.sim_e2e_s * 1e3),
             *_triple(r.real_tput, r.sim_tput)] for r in rows]
    return _render(head, body, markdown)


def _render(head: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *body])


def engine_rows(records: list[dict[str, object]], sim: Sequence[ReplayOutcome], since: float,
                tenants: Sequence[str]) -> list[tuple[str, float, float, float, float]]:
    """Per tenant: (tenant, real mean, sim mean, real median, sim median) TTFT as the scheduler sees it."""
    real = engine_ttfts(records, since)  # type: ignore[arg-type]
    rows = []
    for tenant in tenants:
        r, m = real.get(tenant, [math.nan]), [s.engine_ttft_s for s in sim if s.tenant == tenant]
        rows.append((tenant, statistics.fmean(r), statistics.fmean(m), statistics.median(r), statistics.median(m)))
    return rows


def format_engine_table(rows: Sequence[tuple[str, float, float, float, float]], markdown: bool = False) -> str:
    """The engine-side TTFT table (no HTTP path): mean and median, real versus simulated."""
    head = ["tenant", "engine TTFT ms", "sim", "err %", "median ms", "sim", "err %"]
    body = [[t, *_triple(rm * 1e3, sm * 1e3), *_triple(rp * 1e3, sp * 1e3)] for t, rm, sm, rp, sp in rows]
    return _render(head, body, markdown)


def step_model_error(records: list[dict[str, object]], calibration: Calibration, since: float) -> tuple[float, int]:
    """(sum of predicted / sum of measured iteration time - 1, steps) over the workload's own iterations."""
    steps = [r for r in records if r.get("event") == "step" and float(r["schedule_time"]) >= since]  # type: ignore[arg-type]
    batches, durations = step_samples(steps)
    total = sum(durations)
    return (sum(calibration.predict(b) for b in batches) / total - 1.0 if total else math.nan), len(steps)


def build_model(python: str, out_dir: Path) -> Path:
    """The tiny random Llama (built once per directory) in the vLLM environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([python, "-m", "equinox.integrations.vllm.tiny_model", str(out_dir)], check=True, env=env,
                   capture_output=True, timeout=300)
    return out_dir


def run(args: argparse.Namespace) -> dict[str, object]:
    """Calibrate (or load), run real and simulated, return everything needed for the report."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else build_model(args.python, work / "tiny-llama")
    config_file = work / f"{args.policy}.toml"
    config_file.write_text(PLUGIN_CONFIG)
    step_log = work / f"steps-{args.policy}-{os.getpid()}.jsonl"
    step_log.unlink(missing_ok=True)
    vllm_args = (*BASE_ARGS, "--max-num-seqs", str(args.max_num_seqs),
                 "--max-num-batched-tokens", str(args.max_num_batched_tokens), *args.vllm_args)
    env = {**SERVER_ENV, "EQUINOX_VLLM_STEP_LOG": str(step_log)}
    spec = ServeSpec(model=str(model), policy=args.policy, config_file=str(config_file), port=free_port(),
                     python=args.python, extra_args=vllm_args, env=env)
    cal_path = Path(args.calibration) if args.calibration else work / "calibration.json"
    plan = workload_plan(args.duration_s, args.seed)
    with VllmServer(spec, work / f"server-{args.policy}.log") as server:
        warm = send_completion(server.base_url, str(model), PlannedRequest("warmup", 0.0, words_prompt(64), 8))
        if not warm.is_ok:
            raise SystemExit(f"warm-up request failed: {warm.error}\n{server.log_tail()}")
        if cal_path.exists() and not args.recalibrate:
            calibration = load_calibration(cal_path)
            print(f"calibration: loaded {cal_path}", file=sys.stderr)
        else:
            started = time.monotonic()
            sweep = sweep_plan((32, 320), (1, 4, 12)) if args.quick_calibration else sweep_plan()
            calibration = calibrate(server.base_url, str(model), step_log, plan=sweep)
            save_calibration(calibration, cal_path)
            print(f"calibration: {time.monotonic() - started:.0f} s, saved to {cal_path}", file=sys.stderr)
        time.sleep(0.5)
        started = time.monotonic()
        results = run_plan(server.base_url, str(model), plan, timeout_s=300)
        real_s = time.monotonic() - started
    failed = [r for r in results if not r.is_ok]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} requests failed, e.g. {failed[0].error}")
    records = read_step_log(step_log)
    engine = engine_from_config(engine_config(records))
    settings = settings_from_dict({**tomllib.loads(PLUGIN_CONFIG), "policy": args.policy})
    sim = simulate_replay(replay_requests(results), calibration, args.policy, settings.policy_config(), engine)
    since = min(r.send_time for r in results)
    model_err, num_steps = step_model_error(records, calibration, since)
    rows = compare(results, sim)
    return {"rows": rows, "engine_rows": engine_rows(records, sim, since, [r.tenant for r in rows[:-1]]),
            "calibration": calibration, "engine": engine, "real_s": real_s,
            "step_model_error": model_err, "num_steps": num_steps, "num_requests": len(results),
            "results": results, "sim": sim, "step_log": step_log}


def report(out: dict[str, object], args: argparse.Namespace) -> str:
    """The printed report: settings, calibration summary, the table."""
    cal: Calibration = out["calibration"]  # type: ignore[assignment]
    meta = cal.metadata
    fit = meta.get("fit", {})
    lines = [
        f"policy {args.policy}; {out['num_requests']} requests over {args.duration_s:.0f} s "
        f"(real run {out['real_s']:.0f} s); engine {out['engine']}",
        f"cost model: {cal.overhead_s * 1e3:.3f} ms + "
        + " + ".join(f"{v:.3g}*{k}" for k, v in cal.coefficients.items() if v)
        + f"; fit on {fit.get('num_samples')} steps, mean |rel err| per step {fit.get('mean_abs_rel_error', 0):.1%}",
        f"API path: {meta.get('api_in_s', 0) * 1e3:.2f} ms in, {meta.get('api_out_s', 0) * 1e3:.2f} ms out; "
        f"first step after idle +{meta.get('idle_step_extra_s', 0) * 1e3:.2f} ms",
        f"cost model on this run's {out['num_steps']} iterations: total time {out['step_model_error']:+.1%}",
        "",
        format_table(out["rows"], args.markdown),  # type: ignore[arg-type]
        "",
        "TTFT inside the engine (scheduler clock: no HTTP, tokenizer or client time):",
        format_engine_table(out["engine_rows"], args.markdown),  # type: ignore[arg-type]
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (arguments after `--` go to vLLM)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="vtc", help="fcfs, vtc, equinox, ... (default vtc)")
    parser.add_argument("--duration-s", type=float, default=60.0, help="arrival window of the workload")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--calibration", help="calibration JSON: loaded when it exists, else written there")
    parser.add_argument("--recalibrate", action="store_true", help="calibrate even if --calibration exists")
    parser.add_argument("--quick-calibration", action="store_true", help="a smaller calibration sweep (tests)")
    parser.add_argument("--model", help="a tiny model directory already built (default: build one in --workdir)")
    parser.add_argument("--workdir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "equinox-sim-to-real"))
    parser.add_argument("--python", default=str(VLLM_PYTHON) if VLLM_PYTHON.exists() else sys.executable,
                        help="the Python with vLLM installed (default .venv-vllm/bin/python)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", help="also write the rows and calibration as JSON here")
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    args.vllm_args = extra
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    args = parse_args(argv)
    out = run(args)
    print(report(out, args))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": [asdict(r) for r in out["rows"]],  # type: ignore[attr-defined]
            "calibration": out["calibration"].to_dict(),  # type: ignore[attr-defined]
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
