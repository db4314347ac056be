"""The same trace through Vidur and through `equinox simulate`, side by side (issue 13).

    PYTHONPATH=src python benchmarks/vidur_compare.py --vidur-python /path/to/venv/bin/python --sizes 10000

Vidur runs in its own virtual environment (`python -m venv V && V/bin/pip install vidur`);
give its interpreter with `--vidur-python`. Both simulators get the trace of
`benchmarks/sim_speed.py` (Poisson 8 req/s, 20 tenants, ShareGPT-like lengths), Llama-2-7B
on one A100, 128 sequences per batch, 4,096 tokens per iteration, 16-token KV blocks, and
each is timed as a subprocess (wall and CPU seconds, peak RSS), loading included.

Vidur's profiles. The PyPI release (0.0.26) reads its operator profiles from Hugging Face
datasets at run time; nothing outside the package registries can be reached here, so this
script lays out an offline Hugging Face cache (HF_HUB_OFFLINE=1) holding the profiles we
have: Vidur's own MLP table for Llama-2-7B on the A100 and its network tables, from
`../shared/data/vidur_profiling` (commit 7d47513 of microsoft/vidur). That snapshot has no
attention table, so one is generated from Equinox's roofline (seconds per prefill attention
pair, per decode context token; divided per layer, in milliseconds, on Vidur's grid). This
changes the times Vidur predicts, not the work its event loop does per request, which is
what is compared here.

Where the settings cannot match:
- scheduler: ours is vLLM V1's (chunked prefill, decode-first hybrid batches, admission every
  step); Vidur's closest is `sarathi` (chunked prefill, decodes first) with chunk 4,096 and the
  same batch cap; Vidur's `vllm` scheduler is vLLM's older prefill-only batches;
- KV memory: Vidur sizes it from gpu_memory_utilization (0.9 here, as vLLM's default), ours
  from the deployment's free memory; both have far more than this load needs;
- tenants: Vidur has none (the trace's tenant column is dropped); its predictor is a random
  forest trained on first use (one 16-tree forest, not its grid search; cached: the timed run
  is a warm one, as in the issue);
- outputs: Vidur writes its metrics and plots (plots off here), ours the run directory.
If Vidur cannot run, the script says why and still prints our figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import lzma
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_speed import ISSUE_13_FLAGS, sharegpt_like, trace_file

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "vidur_profiling"
MODEL = "meta-llama/Llama-2-7b-hf"
NETWORK = "a100_pairwise_nvlink"
COMPUTE_DATASET = "local/vidur-a100-llama-2-7b"
NETWORK_DATASET = "local/vidur-a100-pairwise-nvlink"
_REVISION = "0" * 40


def _dataset_dir(cache: Path, kind: str, repo: str) -> Path:
    """A snapshot folder huggingface_hub finds offline: <cache>/datasets--org--name/snapshots/<rev>/."""
    root = cache / "profiling_data" / kind / f"datasets--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(_REVISION)
    snap = root / "snapshots" / _REVISION
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _xz_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as f, lzma.open(dst, "wb") as g:
        shutil.copyfileobj(f, g)


def attention_rows(max_tokens: int = 4096, max_batch: int = 128, block_size: int = 16) -> list[dict[str, object]]:
    """Vidur's attention.csv from Equinox's roofline: per-layer milliseconds on Vidur's profiling grid."""
    from equinox.sim.cost_models.roofline import build_roofline
    from equinox.sim.hardware import make_deployment

    dep = make_deployment("a100-80gb", "llama-2-7b")
    pair_s, ctx_s = build_roofline(dep).attention_coefficients()
    layers = dep.model.num_layers
    base = {"n_embd": 4096, "n_q_head": 32, "n_kv_head": 32, "block_size": block_size,
            "num_tensor_parallel_workers": 1, "time_stats.attn_kv_cache_save.median": 0.0}
    rows: list[dict[str, object]] = []
    for kv in range(0, max_tokens + 1, 256):
        for chunk in range(32, max_tokens - kv + 1, 128):
            pairs = chunk * kv + chunk * (chunk + 1) / 2
            rows.append({**base, "is_decode": False, "batch_size": 1, "kv_cache_size": kv,
                         "prefill_chunk_size": chunk, "time_stats.attn_prefill.median": pair_s * pairs / layers * 1e3,
                         "time_stats.attn_decode.median": 0.0})
    for batch in (1, 2, 4, 8, 16, 32, 64, 96, 128):
        if batch > max_batch:
            break
        for kv in range(16, max_tokens + 1, 128):
            rows.append({**base, "is_decode": True, "batch_size": batch, "kv_cache_size": kv, "prefill_chunk_size": 0,
                         "time_stats.attn_prefill.median": 0.0,
                         "time_stats.attn_decode.median": ctx_s * batch * kv / layers * 1e3})
    return rows


def build_profiles(cache: Path) -> None:
    """The offline Hugging Face cache Vidur 0.0.26 reads its profiles from."""
    compute = _dataset_dir(cache, "compute", COMPUTE_DATASET)
    _xz_copy(SHARED / "compute" / "a100" / MODEL / "mlp.csv", compute / "mlp.csv.xz")
    rows = attention_rows()
    with lzma.open(compute / "attention.csv.xz", "wt", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (compute / "config.json").write_text(json.dumps({"model": MODEL, "device_sku": "a100"}))
    network = _dataset_dir(cache, "network", NETWORK_DATASET)
    for name in ("all_reduce.csv", "send_recv.csv"):
        _xz_copy(SHARED / "network" / NETWORK / name, network / f"{name}.xz")
    (network / "config.json").write_text(json.dumps({"sku": NETWORK}))


def vidur_trace(size: int, args: argparse.Namespace, path: Path) -> Path:
    """The same requests in Vidur's trace_replay format (Date, Time, PromptTokenCount, CompletionTokenCount)."""
    if not path.exists():
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("Date", "Time", "PromptTokenCount", "CompletionTokenCount"))
            for r in sharegpt_like(size, seed=args.seed, rate=args.rate, num_tenants=args.tenants):
                w.writerow(("2023-08-21", repr(r.arrival_time), r.num_prompt_tokens, r.num_output_tokens))
    return path


def vidur_command(args: argparse.Namespace, trace: Path, work: Path) -> list[str]:
    """Vidur's CLI with the settings matched as far as they go (module docstring)."""
    rf = "--random_forrest_execution_time_predictor_config_"
    return [
        args.vidur_python, "-m", "vidur.main",
        "--replica_config_device", "a100", "--replica_config_model_name", MODEL,
        "--replica_config_network_device", NETWORK, "--replica_config_tensor_parallel_size", "1",
        "--replica_config_gpu_memory_utilization", "0.9", "--cluster_config_num_replicas", "1",
        "--replica_scheduler_config_type", "sarathi", "--sarathi_scheduler_config_chunk_size", "4096",
        "--sarathi_scheduler_config_batch_size_cap", "128", "--cache_config_block_size", "16",
        "--request_generator_config_type", "trace_replay",
        "--trace_request_generator_config_trace_file", str(trace),
        "--trace_request_generator_config_date", "2023-08-21",
        "--trace_request_generator_config_time_scale_factor", "1",
        "--trace_request_generator_config_prefill_scale_factor", "1",
        "--trace_request_generator_config_decode_scale_factor", "1",
        "--trace_request_generator_config_max_tokens", "4096",
        f"{rf}model_profiling_dataset", COMPUTE_DATASET, f"{rf}network_profiling_dataset", NETWORK_DATASET,
        f"{rf}cache_dir", str(work / "cache"), f"--no-{rf[2:]}upload_predictions",
        # One small forest instead of Vidur's grid search (hours on 2 shared cores): it changes the
        # predicted times, not the loop's work, and the timed run reuses the cached predictions.
        f"{rf}num_estimators", "16", f"{rf}max_depth", "8", f"{rf}min_samples_split", "2",
        f"{rf}k_fold_cv_splits", "2",
        "--metrics_config_output_dir", str(work / "out"), "--no-metrics_config_store_plots",
        "--no-metrics_config_enable_chrome_trace",
    ]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run `cmd` in a forked child of its own: (wall s, CPU s, peak RSS MiB, tail of its output)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - started
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = json.dumps([wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, proc.returncode,
                          (proc.stdout + proc.stderr)[-3000:]])
        with os.fdopen(wfd, "w") as w:
            w.write(out)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as r:
        wall, cpu, rss, rc, tail = json.loads(r.read())
    os.waitpid(pid, 0)
    if rc:
        raise RuntimeError(f"exit status {rc}:\n{tail}")
    return wall, cpu, rss, tail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vidur-python", help="the Python of a virtual environment with `pip install vidur`")
    p.add_argument("--sizes", default="10000")
    p.add_argument("--rate", type=float, default=8.0)
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trace-dir", default="/tmp/equinox-sim-speed")
    p.add_argument("--policy", default="fcfs")
    args = p.parse_args()
    work = Path(args.trace_dir) / "vidur"
    work.mkdir(parents=True, exist_ok=True)
    vidur_ok = args.vidur_python is not None
    why = "no --vidur-python given"
    if vidur_ok:
        build_profiles(work / "cache")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    print(f"{'requests':>9} {'sim':<8} {'wall_s':>8} {'cpu_s':>8} {'peak_MiB':>8}  note")
    for size in (int(s) for s in args.sizes.split(",")):
        ours = [sys.executable, "-m", "equinox", "simulate", "-p", args.policy, "-w", str(trace_file(size, args)),
                *ISSUE_13_FLAGS, "--no-progress", "--no-reference", "-o", str(work / f"equinox-{size}")]
        o_wall, o_cpu, o_rss, _ = timed(ours)
        print(f"{size:>9} {'equinox':<8} {o_wall:>8.1f} {o_cpu:>8.1f} {o_rss:>8.0f}  -p {args.policy}", flush=True)
        if not vidur_ok:
            print(f"{size:>9} {'vidur':<8} {'-':>8} {'-':>8} {'-':>8}  not run: {why}")
            continue
        cmd = vidur_command(args, vidur_trace(size, args, work / f"vidur-trace-{size}.csv"), work)
        try:
            timed(cmd, env) if not (work / "cache" / "warm").exists() else None  # trains and caches the predictor
            (work / "cache" / "warm").touch()
            v_wall, v_cpu, v_rss, _ = timed(cmd, env)
        except RuntimeError as exc:
            vidur_ok, why = False, f"Vidur failed: {str(exc)[-1500:]}"
            print(f"{size:>9} {'vidur':<8} {'-':>8} {'-':>8} {'-':>8}  not run: {why}")
            continue
        print(f"{size:>9} {'vidur':<8} {v_wall:>8.1f} {v_cpu:>8.1f} {v_rss:>8.0f}  sarathi, warm predictor cache; "
              f"ratio vidur/equinox: CPU {v_cpu / o_cpu:.1f}x, wall {v_wall / o_wall:.1f}x", flush=True)


if __name__ == "__main__":
    main()
