"""`equinox simulate`, `equinox compare` and `equinox list`: parse, build a config, run, write."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equinox.cli.argtypes import seed
from equinox.cli.progress import Progress
from equinox.cli.table import fmt, render
from equinox.compiled import is_compiled
from equinox.config import DEFAULT_WORKLOAD, RunConfig, load_config_file
from equinox.errors import ConfigError
from equinox.sim.engine import engine_names

DEFAULT_POLICIES = "fcfs,lcf,vtc,vtc-predict,equinox"
DEFAULT_SIMULATE_POLICY = "equinox"


def _kv(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like NAME=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by simulate and compare."""
    p.add_argument("--config", help="TOML run config; command-line options override it")
    p.add_argument("-w", "--workload", help=f"preset, VTC suite or trace file (default {DEFAULT_WORKLOAD})")
    p.add_argument("--seed", type=seed)
    p.add_argument("--duration", type=float, dest="duration_s", help="workload duration, s")
    p.add_argument("--rate-scale", type=float, help="multiply every arrival rate")
    p.add_argument("--tenants", type=int, dest="num_tenants", help="tenant count (presets that take one)")
    p.add_argument("--gpu", help="GPU name (see `equinox list`)")
    p.add_argument("--model", help="model name (see `equinox list`)")
    p.add_argument("--tensor-parallel", "--tp", type=int, dest="tensor_parallel")
    p.add_argument("--cost-model", help="cost model name, or auto (fitted when data exists, else roofline)")
    p.add_argument("--runtime-scale", type=float, help="multiply every iteration time (a runtime-efficiency factor)")
    p.add_argument("--step-overhead", type=float, dest="step_overhead_s",
                   help="seconds the serving runtime adds to every iteration (its loop, RPC, output handling)")
    p.add_argument("--seq-overhead", type=float, dest="seq_overhead_s",
                   help="seconds the serving runtime adds per sequence in an iteration")
    p.add_argument("--engine", choices=engine_names(), dest="engine_mode",
                   help="vllm: chunked, decode-first, admit every step; slora: the VTC artifact's engine")
    p.add_argument("--max-num-batched-tokens", "--batch-max-tokens", type=int, dest="max_num_batched_tokens",
                   help="token budget of an iteration (slora: S-LoRA's batch_max_tokens, default max(pool/6, 3072))")
    p.add_argument("--max-num-seqs", "--running-max-req-size", type=int, dest="max_num_seqs",
                   help="requests running at once (default: vllm 256, slora 1000)")
    p.add_argument("--block-size", type=int)
    p.add_argument("--kv-blocks", type=int, dest="num_kv_blocks")
    p.add_argument("--kv-tokens", "--max-total-token-num", type=int, dest="kv_capacity_tokens",
                   help="KV capacity in tokens (slora: S-LoRA's max_total_token_num, token-granular)")
    p.add_argument("--chunked-prefill", action=argparse.BooleanOptionalAction, dest="enable_chunked_prefill")
    p.add_argument("--admission-interval", "--max-wait-tokens", type=int, dest="admission_interval_steps",
                   help="slora: decode steps before waiting requests are considered (S-LoRA's max_wait_tokens, 10)")
    p.add_argument("--kv-admission", choices=("peak", "reserve-all"),
                   help="slora: peak future KV use (S-LoRA's rule, default) or reserve prompt + output up front")
    p.add_argument("--max-req-total-len", type=int,
                   help="slora: S-LoRA's max_req_total_len; batch_max_tokens defaults to max(pool / 6, it), 3072")
    p.add_argument("--lora-rank", type=int,
                   help="slora: KV tokens 4 x rank set aside per adapter (tenant) in the batch")
    p.add_argument("--long-prefill-token-threshold", type=int, dest="long_prefill_token_threshold",
                   help="vllm: at most this many tokens of one request per step while others run or wait (0: off)")
    p.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction, dest="async_scheduling",
                   help="vllm: plan each step while the previous one runs (vLLM's async scheduling, one-step lag)")
    p.add_argument("--rpm-limit", type=float, help="requests per minute per tenant (policy rpm)")
    p.add_argument("--weight", action="append", metavar="TENANT=W", help="tenant weight (repeatable)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="policy parameter, e.g. alpha=0.5 (repeatable)")
    p.add_argument("--alpha", type=float, help="Equinox: weight of the user fairness counter")
    p.add_argument("--beta", type=float, help="Equinox: weight of the resource fairness counter")
    p.add_argument("--until", type=float, dest="until_s", help="stop the simulation at this time, s")
    p.add_argument("--frontend-ingress", type=float, dest="frontend_ingress_s",
                   help="API server: seconds from a request's send to the engine seeing it (default 0: bare engine)")
    p.add_argument("--frontend-ingress-per-token", type=float, dest="frontend_ingress_per_token_s",
                   help="API server: seconds of queued work per prompt token (tokenisation; bursts queue)")
    p.add_argument("--frontend-egress", type=float, dest="frontend_egress_s",
                   help="API server: seconds from the engine's token to the client")
    p.add_argument("--frontend-egress-per-token", type=float, dest="frontend_egress_per_token_s",
                   help="API server: seconds per streamed token (a token waits for half of the streams' tokens)")
    p.add_argument("-o", "--out", help="run directory (default runs/<workload>-<policy>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_simulate_options(p: argparse.ArgumentParser) -> None:
    """Options of `simulate` only."""
    p.add_argument("--no-reference", action="store_true",
                   help="skip the served-alone reference runs (user-side, isolation and holistic indices are then "
                        "n/a); they cost about one more simulation of the whole trace")
    p.add_argument("--records-format", choices=("csv", "parquet"), default="csv",
                   help="per-request rows as requests.csv (default) or requests.parquet (needs pyarrow)")


_FIELDS = (
    "workload", "seed", "duration_s", "rate_scale", "num_tenants", "gpu", "model", "tensor_parallel",
    "cost_model", "runtime_scale", "step_overhead_s", "seq_overhead_s", "engine_mode", "max_num_batched_tokens",
    "max_num_seqs", "block_size", "num_kv_blocks",
    "kv_capacity_tokens", "enable_chunked_prefill", "admission_interval_steps", "kv_admission", "lora_rank",
    "max_req_total_len",
    "long_prefill_token_threshold", "async_scheduling", "rpm_limit", "until_s",
    "frontend_ingress_s", "frontend_ingress_per_token_s", "frontend_egress_s", "frontend_egress_per_token_s",
)


def config_from_args(args: argparse.Namespace, default_policy: str | None = None) -> RunConfig:
    """Merge the config file (if any) with command-line options (`default_policy` unless either names one)."""
    base = RunConfig() if default_policy is None else RunConfig(policy=default_policy)
    if args.config:
        base = load_config_file(args.config, base)
    changes: dict[str, Any] = {f: getattr(args, f) for f in _FIELDS if getattr(args, f, None) is not None}
    if args.weight:
        weights = {}
        for tenant, value in _kv(args.weight, "--weight").items():
            try:
                weights[tenant] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"--weight {tenant}={value}: the weight must be a number, e.g. {tenant}=2") from None
        changes["tenant_weights"] = {**base.tenant_weights, **weights}
    params = {**base.policy_params, **_kv(args.param, "--param")}
    for knob in ("alpha", "beta"):
        if getattr(args, knob) is not None:
            params[knob] = getattr(args, knob)
    changes["policy_params"] = params
    return base.replace(**changes)


def _progress(args: argparse.Namespace, label: str) -> Progress | None:
    return None if args.no_progress else Progress(label)


def summary_rows(result: Any) -> tuple[list[str], list[list[object]]]:
    """Per-tenant rows plus an `all` row for one run."""
    s = result.summary
    headers = ["tenant", "weight", "requests", "finished", "rejected", "service", "ttft_mean_s",
               "ttft_p90_s", "tpot_mean_s", "e2e_mean_s"]
    rows: list[list[object]] = []
    for t in s.tenants:
        lat = t.latency
        rows.append([t.tenant, t.weight, t.num_requests, t.num_finished, t.num_rejected, t.service,
                     lat.ttft.mean, lat.ttft.p90, lat.tpot.mean, lat.e2e.mean])
    lat, thr = s.latency, s.throughput
    rows.append(["all", None, thr.num_finished + thr.num_rejected + thr.num_unfinished, thr.num_finished,
                 thr.num_rejected,
                 sum(t.service for t in s.tenants), lat.ttft.mean, lat.ttft.p90, lat.tpot.mean, lat.e2e.mean])
    return headers, rows


def run_simulate(args: argparse.Namespace) -> int:
    """`equinox simulate`: streams the trace in and the run directory out (sim/streamed.py)."""
    from equinox.sim.streamed import open_workload, run_streamed

    config = config_from_args(args, DEFAULT_SIMULATE_POLICY)  # -p wins over the config file's policy
    if args.policy:
        config = config.replace(policy=args.policy)
    from equinox.cli.cluster import is_cluster, run_cluster_simulate

    if is_cluster(args):
        return run_cluster_simulate(args, config)
    progress = _progress(args, f"{config.policy}")
    workload = open_workload(config)
    out_path = Path(args.out or Path("runs") / f"{workload[0].name}-{config.policy}")
    result = run_streamed(config, out_path, reference=not args.no_reference, records_format=args.records_format,
                          progress=progress, workload=workload)
    if progress:
        progress.done()
    headers, rows = summary_rows(result)
    print(render(headers, rows, title=_title(result)))
    print()
    print(_overall_line(result))
    if result.reference_s is not None:
        print(f"reference runs (each tenant served alone, saturation probe; cached): {result.reference_s:.1f} s "
              "(--no-reference skips them)")
    print(f"simulator core: {'compiled' if is_compiled() else 'pure Python'}")
    print(f"run directory: {result.out}")
    return 0


def _check_some_served(result: Any) -> None:
    """ConfigError when every request was rejected: the settings cannot serve this workload (issue #12)."""
    reasons = [r.reject_reason for r in result.records if r.reject_reason]
    if result.records and len(reasons) == len(result.records):
        raise ConfigError(f"every one of the {len(reasons)} requests was rejected ({reasons[0]}); "
                          "these settings cannot serve this workload")


def _title(result: Any) -> str:
    wl = result.workload
    synth = " (synthetic tenants)" if wl.is_synthetic_tenants else ""
    return (f"policy {result.config.policy} | workload {wl.name}{synth}, {wl.num_requests} requests | "
            f"{result.deployment.name}, cost model {result.cost_model_name} | engine {result.engine.mode}")


def _overall_line(result: Any) -> str:
    s = result.summary
    f, u, t = s.fairness, s.utilisation, s.throughput
    if f.num_windows:
        fairness = (f"service difference max {f.service_diff_max:,.1f} mean {f.service_diff_mean:,.1f} | "
                    f"Jain {fmt(f.jain_mean)}")
    else:
        fairness = (f"fairness n/a (needs arrivals past {result.config.warmup_s + result.config.window_s:.0f} s: "
                    "a 60 s window after the warm-up)")
    h = s.holistic
    if h is not None and h.has_reference:
        fairness += (f" | user {fmt(h.user_index)} resource {fmt(h.resource_index)} isolation infl "
                     f"{fmt(h.isolation_inflation)} holistic {fmt(h.holistic_index)}")
    return (f"throughput {t.tokens_per_s:,.0f} tok/s ({t.requests_per_s:.2f} req/s) | {fairness} | "
            f"GPU busy {u.busy_fraction:.1%} MFU {u.mfu:.1%} KV {u.kv_utilisation:.1%} | "
            f"preemptions {s.num_preemptions} | simulated in {result.wall_s:.1f} s")


def _run_one(config: RunConfig, out: str) -> dict[str, Any]:
    """Worker for compare: run one policy, write its directory, return the comparison row."""
    from equinox.metrics.baseline import CACHE_DIR_NAME, with_reference
    from equinox.report.series import holistic_columns
    from equinox.rundir import write_run_dir
    from equinox.sim.run import run_simulation

    result = with_reference(run_simulation(config), Path(out).parent / CACHE_DIR_NAME)  # shared by the policies
    write_run_dir(result, out)
    s = result.summary
    ttft = {t.tenant: t.latency.ttft.mean for t in s.tenants}
    return {
        "policy": config.policy, "title": _title(result), "tokens_per_s": s.throughput.tokens_per_s,
        "ttft_mean": s.latency.ttft.mean, "ttft_p90": s.latency.ttft.p90, "tpot_mean": s.latency.tpot.mean,
        "sd_max": s.fairness.service_diff_max, "sd_mean": s.fairness.service_diff_mean,
        "jain": s.fairness.jain_mean, "busy": s.utilisation.busy_fraction, "mfu": s.utilisation.mfu,
        "preemptions": s.num_preemptions, "rejected": s.throughput.num_rejected,
        "unfinished": s.throughput.num_unfinished, "tenant_ttft": ttft, "out": out, "wall_s": result.wall_s,
        **holistic_columns(s.as_dict()),
    }


def _check_compared_params(policies: list[str], params: Mapping[str, Any]) -> None:
    """Every given parameter must belong to at least one compared policy (else it is a typo)."""
    from equinox.scheduling.policy import policy_param_names

    accepted = {name for p in policies for name in policy_param_names(p)}
    unused = sorted(set(params) - accepted)
    if unused:
        raise ConfigError(
            f"parameter(s) {', '.join(unused)} belong to none of the compared policies ({', '.join(policies)}); "
            f"their parameters: {', '.join(sorted(accepted)) or '(none)'}"
        )


def run_compare(args: argparse.Namespace) -> int:
    """`equinox compare`: several policies on the same workload, one table."""
    if args.runs:
        return run_compare_dirs(args.runs)
    base = config_from_args(args)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise ConfigError("--policies is empty; give a comma-separated list, e.g. fcfs,vtc")
    from equinox.scheduling.policy import make_policy, params_for_policy, policy_names

    known = policy_names()
    for p in policies:
        if p not in known:
            raise ConfigError(f"unknown policy {p!r}; known: {', '.join(known)}")
    _check_compared_params(policies, base.policy_params)
    # each policy gets only its own parameters (--alpha is Equinox's, cost_function VTC's, ...)
    configs = [base.replace(policy=p, policy_params=params_for_policy(p, base.policy_params)) for p in policies]
    for c in configs:  # fail fast on a bad policy config (e.g. rpm without a limit)
        from equinox.scheduling.interface import PolicyConfig

        make_policy(c.policy, PolicyConfig(rpm_limit=c.rpm_limit, params=dict(c.policy_params)))
    root = Path(args.out or Path("runs") / f"compare-{base.workload.replace('/', '_').replace('.', '_')}")
    jobs = max(1, min(args.jobs or (os.cpu_count() or 1), len(configs)))
    progress = _progress(args, "compare")
    rows: list[dict[str, Any]] = []
    if jobs == 1:
        for i, c in enumerate(configs):
            rows.append(_run_one(c, str(root / c.policy)))
            if progress:
                progress(i + 1, len(configs))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_one, c, str(root / c.policy)) for c in configs]
            for i, fut in enumerate(futures):
                rows.append(fut.result())
                if progress:
                    progress(i + 1, len(configs))
    if progress:
        progress.done()
    print_compare_table(rows, rows[0]["title"].split("|", 1)[1].strip())
    (root / "compare.json").write_text(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
    print(f"run directories: {root}/<policy>; table: {root / 'compare.json'}")
    return 0


_FAIRNESS_KEYS = ("user", "resource", "iso_infl", "holistic")  # columns U, R, iso_infl, H (report.series)


def print_compare_table(rows: list[dict[str, Any]], title: str) -> None:
    """One row per run: throughput, latency, fairness, utilisation, per-tenant TTFT (up to four tenants)."""
    tenants = list(dict.fromkeys(t for r in rows for t in r["tenant_ttft"]))
    show_tenants = tenants if len(tenants) <= 4 else []
    headers = ["policy", "tok/s", "ttft_mean_s", "ttft_p90_s", "tpot_mean_s", "svc_diff_max",
               "svc_diff_mean", "jain", "U", "R", "iso_infl", "H", "gpu_busy", "mfu", "preempt", "rejected"]
    headers += [f"ttft[{t}]" for t in show_tenants]
    table = []
    for r in rows:
        table.append([r["policy"], r["tokens_per_s"], r["ttft_mean"], r["ttft_p90"], r["tpot_mean"], r["sd_max"],
                      r["sd_mean"], r["jain"], *(r.get(k, math.nan) for k in _FAIRNESS_KEYS),
                      r["busy"], r["mfu"], r["preemptions"], r["rejected"]]
                     + [r["tenant_ttft"].get(t) for t in show_tenants])
    print(render(headers, table, title=title))
    print()
    print("ttft: time to first token (s); tpot: time per output token after the first (s); svc_diff: VTC's "
          "service difference (tokens/s, 60 s windows after 30 s warm-up); jain: Jain's index of weighted "
          "service relative to max-min fair share (mean over windows); U: user-side index (tokens and latency "
          "inflation vs served alone, demand-aware), R: resource-side index (GPU and KV time vs fair share), iso_infl: "
          "worst well-behaved tenant's p90 TTFT inflation while another floods (lower is better), H: holistic index "
          "0.4 U + 0.4 R + 0.2 isolation (indices in [0, 1], higher is fairer; docs/algorithm.md); gpu_busy: fraction "
          "of time the engine "
          "computes; mfu: model-FLOPs utilisation over the run.")


def _num_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def row_from_run_dir(path: Path) -> dict[str, Any]:
    """The comparison row of an existing run directory (simulated or live)."""
    from equinox.report.series import holistic_columns

    try:
        summary = json.loads((path / "summary.json").read_text())
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: not a run directory ({Path(exc.filename).name} is missing)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: broken run directory file: {exc}") from None
    try:
        lat, fair, util, thr = (summary[k] for k in ("latency", "fairness", "utilisation", "throughput"))
        policy = str(config.get("config", {}).get("policy", path.name))
        kind = config.get("kind", "simulated")
        return {
            "policy": policy if kind == "simulated" else f"{policy} ({kind})",
            "title": f"{path.name} | {config.get('workload', {}).get('name', '?')}",
            "tokens_per_s": _num_or_nan(thr.get("tokens_per_s")), "ttft_mean": _num_or_nan(lat["ttft"]["mean"]),
            "ttft_p90": _num_or_nan(lat["ttft"]["p90"]), "tpot_mean": _num_or_nan(lat["tpot"]["mean"]),
            "sd_max": _num_or_nan(fair.get("service_diff_max")), "sd_mean": _num_or_nan(fair.get("service_diff_mean")),
            "jain": _num_or_nan(fair.get("jain_mean")), "busy": _num_or_nan(util.get("busy_fraction")),
            "mfu": _num_or_nan(util.get("mfu")), "preemptions": summary.get("num_preemptions", 0),
            "rejected": thr.get("num_rejected", 0),
            "tenant_ttft": {t["tenant"]: _num_or_nan(t["latency"]["ttft"]["mean"]) for t in summary.get("tenants", [])},
            **holistic_columns(summary),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}/summary.json: missing or malformed field {exc}") from None


def run_compare_dirs(paths: list[str]) -> int:
    """`equinox compare --runs DIR...`: the same table from existing run directories (simulated or live)."""
    rows = [row_from_run_dir(Path(p)) for p in paths]
    print_compare_table(rows, "runs: " + ", ".join(Path(p).name for p in paths))
    return 0


def run_list(args: argparse.Namespace) -> int:
    """`equinox list`: policies, GPUs, models, cost models, workloads."""
    from equinox.scheduling.policy import POLICIES, policy_names
    from equinox.sim import cost_models  # noqa: F401 - registers cost models
    from equinox.sim.cost_model import COST_MODELS
    from equinox.sim.hardware import GPUS, MODELS

    what = args.what
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    if what in ("all", "policies"):
        sections.append(("policies", [(n, POLICIES.help(n)) for n in policy_names()]))
    if what in ("all", "gpus"):
        sections.append(("gpus", [(n, _gpu_line(GPUS.get(n))) for n in GPUS]))
    if what in ("all", "models"):
        sections.append(("models", [(n, _model_line(MODELS.get(n))) for n in MODELS]))
    if what in ("all", "cost-models"):
        sections.append(("cost models", [(n, COST_MODELS.help(n)) for n in COST_MODELS]))
    if what in ("all", "workloads"):
        sections.append(("workloads", _workload_lines()))
    for title, items in sections:
        print(f"{title}:")
        width = max((len(n) for n, _ in items), default=0)
        for name, help_text in items:
            print(f"  {name.ljust(width)}  {help_text}")
        print()
    return 0


def _gpu_line(g: Any) -> str:
    return f"{g.peak_flops / 1e12:.0f} TFLOP/s bf16, {g.hbm_bandwidth / 1e9:.0f} GB/s, {g.memory_bytes / 2**30:.0f} GiB"


def _model_line(m: Any) -> str:
    return f"{m.num_params / 1e9:.1f} B params, {m.num_layers} layers, KV {m.kv_bytes_per_token / 1024:.0f} KiB/token"


def _workload_lines() -> list[tuple[str, str]]:
    try:
        from equinox.workload import catalogue  # type: ignore[attr-defined]
    except ImportError:
        return [(DEFAULT_WORKLOAD, "VTC overload suite (default)")]
    return list(catalogue())


def add_parsers(sub: Any) -> None:
    """Register simulate, compare and list."""
    p = sub.add_parser("simulate", help="simulate one policy on a workload; writes a run directory")
    p.add_argument("-p", "--policy", help=f"policy name (default: the --config file's, else {DEFAULT_SIMULATE_POLICY})")
    add_run_options(p)
    add_simulate_options(p)
    from equinox.cli.cluster import add_cluster_options

    add_cluster_options(p)
    p.set_defaults(func=run_simulate)
    p = sub.add_parser("compare", help="several policies on the same workload, side by side")
    p.add_argument("--policies", default=DEFAULT_POLICIES, help=f"comma-separated (default {DEFAULT_POLICIES})")
    p.add_argument("-j", "--jobs", type=int, help="parallel runs (default: cores)")
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR",
                   help="compare existing run directories (simulated or live, e.g. from `equinox bench`) instead")
    add_run_options(p)
    p.set_defaults(func=run_compare)
    p = sub.add_parser("list", help="list policies, GPUs, models, cost models and workloads")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "policies", "gpus", "models", "cost-models", "workloads"])
    p.set_defaults(func=run_list)
