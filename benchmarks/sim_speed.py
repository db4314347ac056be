"""Simulator speed and peak memory as a user meets them: `equinox simulate` end to end (issue 13).

Each run is a fresh `python -m equinox simulate ... -o DIR` subprocess on a canonical CSV
trace (loading it counts), measured from outside: wall seconds, CPU seconds (user +
system, from the child's rusage), peak RSS, requests per CPU second. The trace: Poisson
arrivals at 8 requests/s from 20 tenants, ShareGPT-like log-normal lengths, drawn with a
seeded RNG (`sharegpt_like`); the settings are issue 13's: Llama-2-7B on an A100-80GB,
Vidur cost model, vLLM-style engine, 128 sequences, 4,096 tokens, 16-token blocks.
On a shared machine compare CPU seconds, not wall seconds, and take ratios between policies
from several interleaved rounds (`--repeat`): each round runs every policy once, so a slow
stretch of the machine hits them alike, and each ratio is the median of the rounds' own.
Where the machine's speed moves more than the policies differ (a virtual machine whose
neighbours take its core: the stolen time is counted as the run's own), `best_ratio` is the
steadier figure: each policy's fastest run over FCFS's fastest, as `timeit` advises (the
fastest run is the one the neighbours disturbed least; slower ones measure them, not the code).
`--cachegrind` counts instructions and models cycles under valgrind instead: the same figures on
every run and machine; `--ll-kib` and `--miss-cycles` change the simulated last level and what a miss
in it costs (a smaller share of the cache, a slower memory), to see how much of a ratio is misses.
`--paired` (two cores or more) runs each policy at the same time as an FCFS run, one per core,
so both meet the same stretch of the machine; on a calm host the ratio of their CPU seconds (and
of their user seconds alone: system time is mostly writing the run directory, whose size differs
by policy) then moves less from round to round than that of runs one after the other (on a
busy one it spreads as widely: docs/results.md).

    PYTHONPATH=src python benchmarks/sim_speed.py                          # 10k and 100k, fcfs/vtc/equinox
    PYTHONPATH=src python benchmarks/sim_speed.py --sizes 1000000          # the 1M target (< 40 s, < 400 MB)
    PYTHONPATH=src python benchmarks/sim_speed.py --policies equinox,equinox:alpha=1,beta=0 --sizes 100000
    PYTHONPATH=src python benchmarks/sim_speed.py --reference              # with the served-alone runs
    PYTHONPATH=src python benchmarks/sim_speed.py --repeat 3               # three interleaved rounds, medians
    PYTHONPATH=src python benchmarks/sim_speed.py --paired --repeat 3 --sizes 1000000   # ratios to FCFS, concurrent
    PYTHONPATH=src python benchmarks/sim_speed.py --cachegrind --sizes 100000   # instructions, modelled cycles
    PYTHONPATH=src python benchmarks/sim_speed.py --cachegrind --ll-kib 256 --miss-cycles 100   # a smaller, slower LL
    PYTHONPATH=src python benchmarks/sim_speed.py --in-process --sizes 100000 [--profile]   # the loop alone
    scripts/build_compiled build/compiled && PYTHONPATH=build/compiled python benchmarks/sim_speed.py  # compiled core

`--reference` keeps the served-alone reference runs (each tenant alone, the saturation
probe) that `equinox simulate` makes by default; their cost is printed in its own column
(the cache directory is emptied first so they really run). Without it every run passes
`--no-reference`.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from equinox.request import RequestSpec

ISSUE_13_FLAGS = ("--gpu", "a100-80gb", "--model", "llama-2-7b", "--cost-model", "vidur", "--engine", "vllm",
                  "--max-num-seqs", "128", "--max-num-batched-tokens", "4096", "--block-size", "16")


def sharegpt_like(num_requests: int, *, seed: int, rate: float, num_tenants: int) -> list[RequestSpec]:
    """Poisson arrivals at `rate` req/s, log-normal prompt/output lengths (medians ~160/140 tokens)."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(num_requests):
        t += rng.expovariate(rate)
        prompt = min(2048, max(1, int(rng.lognormvariate(5.1, 1.0))))
        output = min(1024, max(1, int(rng.lognormvariate(4.9, 0.9))))
        tenant = f"tenant-{min(num_tenants - 1, int(rng.paretovariate(1.2)) - 1)}"
        out.append(RequestSpec(f"r{i}", tenant, t, prompt, output))
    return out


def trace_file(size: int, args: argparse.Namespace) -> Path:
    """The canonical CSV trace of `size` requests (written once, reused)."""
    from equinox.workload.io import write_workload
    from equinox.workload.schema import Workload

    path = Path(args.trace_dir) / f"sharegpt-like-{size}-seed{args.seed}-rate{args.rate:g}-t{args.tenants}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        specs = sharegpt_like(size, seed=args.seed, rate=args.rate, num_tenants=args.tenants)
        tmp = path.with_suffix(".tmp.csv")
        write_workload(Workload(f"sharegpt-like-{size}", tuple(specs), source="benchmarks/sim_speed.py"), tmp)
        os.replace(tmp, path)
    return path


def policy_flags(spec: str) -> tuple[str, list[str]]:
    """'equinox:alpha=1,beta=0' -> ('equinox', ['--param', 'alpha=1', '--param', 'beta=0'])."""
    name, _, params = spec.partition(":")
    flags: list[str] = []
    for p in filter(None, params.split(",")):
        flags += ["--param", p]
    return name, flags


def simulate_command(trace: Path, spec: str, out: Path, args: argparse.Namespace) -> list[str]:
    """The `equinox simulate` command line of one measured run (`--no-reference` unless --reference)."""
    policy, extra = policy_flags(spec)
    cmd = [sys.executable, "-m", "equinox", "simulate", "-p", policy, "-w", str(trace), *ISSUE_13_FLAGS,
           *extra, "--no-progress", "--records-format", args.records_format, "-o", str(out)]
    return cmd if args.reference else [*cmd, "--no-reference"]


def run_cli(trace: Path, spec: str, out: Path, args: argparse.Namespace) -> dict[str, float | str]:
    """One `equinox simulate` subprocess: its wall seconds and the reference runs' seconds it printed."""
    cmd = simulate_command(trace, spec, out, args)
    if args.reference:
        shutil.rmtree(out.parent / ".equinox-reference", ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    ref = re.search(r"reference runs .*?: ([0-9.]+) s", proc.stdout)
    return {"policy": spec, "wall_s": wall, "reference_s": float(ref.group(1)) if ref else float("nan")}


def measure(trace: Path, spec: str, out: Path, args: argparse.Namespace) -> dict[str, float | str]:
    """run_cli with the child's CPU time and peak RSS (RUSAGE_CHILDREN of a process whose only child it is)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_cli(trace, spec, out, args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    r["user_s"], r["sys_s"], r["cpu_s"] = user, system, user + system
    r["peak_rss_mib"] = after.ru_maxrss / 1024  # KiB on Linux
    return r


def _core() -> str:
    """Which simulator core this process (and the CLI children, on the same PYTHONPATH) imports."""
    import equinox
    from equinox.compiled import is_compiled

    if not is_compiled():
        return "pure Python"
    marker = Path(equinox.__file__).resolve().parent.parent / ".equinox-compiled"  # scripts/build_compiled's
    pgo = marker.exists() and "--pgo" in marker.read_text()
    return "compiled (mypyc, profile-guided: build_compiled --pgo)" if pgo else "compiled (mypyc)"


def _print_setup(args: argparse.Namespace) -> None:
    """The core, the command's settings and the trace, above every table of runs through the CLI."""
    print(f"simulator core: {_core()}")
    print(f"equinox simulate {' '.join(ISSUE_13_FLAGS)}; trace: Poisson {args.rate:g} req/s, {args.tenants} tenants, "
          f"ShareGPT-like lengths (seed {args.seed}); records {args.records_format}; "
          f"{'with' if args.reference else 'without'} reference runs")


def cli_main(args: argparse.Namespace) -> None:
    """Measure every size x policy through the CLI, the policies interleaved round by round."""
    _print_setup(args)
    if args.repeat > 1:
        print(f"{args.repeat} rounds, each running every policy once in turn: the medians of the rounds are "
              f"printed, and each ratio is the median of the rounds' own ratios (range after it); best_cpu_s "
              f"is the fastest run, best_ratio the fastest over FCFS's fastest")
    print(f"{'requests':>9} {'policy':<24} {'wall_s':>8} {'cpu_s':>8} {'req/cpu_s':>9} {'peak_MiB':>8} "
          f"{'vs_fcfs_cpu':>11} {'ratio_range':>11} {'best_cpu_s':>10} {'best_ratio':>10} {'ref_s':>7}")
    specs = args.policies.split(";")
    for size in args.sizes:
        trace = trace_file(size, args)
        runs: dict[str, list[dict[str, float | str]]] = {spec: [] for spec in specs}
        for k in range(args.repeat):
            # Round by round, not policy by policy: a shared machine changes speed over tens of
            # seconds, and a slow stretch then hits every policy of the round alike.
            for spec in specs:
                with tempfile.TemporaryDirectory(dir=args.trace_dir) as tmp:
                    # A fresh process per run, measured alone, so its peak RSS is its own.
                    r = _isolated(trace, spec, Path(tmp) / "run", args)
                runs[spec].append(r)
                if args.repeat > 1:
                    print(f"  round {k + 1}/{args.repeat}: {size} {spec}: {float(r['cpu_s']):.1f} CPU-s",
                          file=sys.stderr, flush=True)
        for spec in specs:
            print(f"{size:>9} {spec:<24} {_summary_row(runs[spec], runs.get('fcfs'), size)}", flush=True)


def _median(values: list[float]) -> float:
    """The middle value (the lower middle of an even count: a run that happened)."""
    return sorted(values)[(len(values) - 1) // 2]


def _summary_row(runs: list[dict[str, float | str]], base: list[dict[str, float | str]] | None, size: int) -> str:
    """One policy's columns after the policy name: the median run by CPU seconds, the median and range
    of its per-round CPU ratio to FCFS (the run of FCFS in the same round), and its fastest run's CPU
    seconds over FCFS's fastest."""
    r = sorted(runs, key=lambda x: float(x["cpu_s"]))[(len(runs) - 1) // 2]
    cpu = float(r["cpu_s"])
    best = min(float(x["cpu_s"]) for x in runs)
    ratio, spread, best_ratio = "-", "-", "-"
    if base:
        ratios = [float(a["cpu_s"]) / float(b["cpu_s"]) for a, b in zip(runs, base, strict=True)]
        ratio = f"{_median(ratios):.2f}"
        best_ratio = f"{best / min(float(b['cpu_s']) for b in base):.3f}"
        if len(ratios) > 1:
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    return (f"{float(r['wall_s']):>8.1f} {cpu:>8.1f} {size / cpu:>9.0f} {float(r['peak_rss_mib']):>8.0f} "
            f"{ratio:>11} {spread:>11} {best:>10.2f} {best_ratio:>10} {float(r['reference_s']):>7.1f}")


def _isolated(trace: Path, spec: str, out: Path, args: argparse.Namespace) -> dict[str, float | str]:
    """`measure` in a forked child of its own, so RUSAGE_CHILDREN's peak RSS is this run's."""
    return _collect(*_start(trace, spec, out, args))


def _start(trace: Path, spec: str, out: Path, args: argparse.Namespace) -> tuple[int, int]:
    """Fork a child that runs `measure` and writes its result to a pipe: (pid, read end)."""
    import json

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: run one measurement, send it back, exit
        os.close(rfd)
        try:
            payload = json.dumps(measure(trace, spec, out, args))
        except BaseException as exc:
            payload = json.dumps({"error": str(exc)})
        with os.fdopen(wfd, "w") as w:
            w.write(payload)
        os._exit(0)
    os.close(wfd)
    return pid, rfd


def _collect(pid: int, rfd: int) -> dict[str, float | str]:
    """The result of a child `_start` forked (waits for it)."""
    import json

    with os.fdopen(rfd) as r:
        data = json.loads(r.read() or '{"error": "no result"}')
    os.waitpid(pid, 0)
    if "error" in data:
        raise SystemExit(data["error"])
    return data  # type: ignore[no-any-return]


def paired_main(args: argparse.Namespace) -> None:
    """Each policy's CPU ratio to FCFS from runs made at the same time, one per core."""
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("--paired runs two simulations at once: it needs two cores or more")
    if args.reference:
        raise SystemExit("--paired runs without the served-alone reference runs: drop --reference")
    specs = [s for s in args.policies.split(";") if s != "fcfs"]
    if not specs:
        raise SystemExit("--paired compares policies with FCFS: give --policies at least one other than fcfs")
    _print_setup(args)
    print(f"{args.repeat} round(s); in each, every policy runs at the same time as an FCFS run (one per core). "
          "Medians over the rounds, ranges after them; user_ratio leaves out system time (mostly file writes)")
    print(f"{'requests':>9} {'policy':<24} {'fcfs_cpu_s':>10} {'cpu_s':>8} {'cpu_ratio':>9} {'range':>11} "
          f"{'user_ratio':>10} {'range':>11} {'sys_s':>6}")
    for size in args.sizes:
        trace = trace_file(size, args)
        pairs: dict[str, list[tuple[dict[str, float | str], dict[str, float | str]]]] = {s: [] for s in specs}
        for k in range(args.repeat):
            for spec in specs:
                with tempfile.TemporaryDirectory(dir=args.trace_dir) as tmp:
                    base = _start(trace, "fcfs", Path(tmp) / "fcfs", args)
                    other = _start(trace, spec, Path(tmp) / "run", args)
                    pair = (_collect(*base), _collect(*other))
                pairs[spec].append(pair)
                print(f"  round {k + 1}/{args.repeat}: {size} fcfs {float(pair[0]['cpu_s']):.1f} | {spec} "
                      f"{float(pair[1]['cpu_s']):.1f} CPU-s", file=sys.stderr, flush=True)
        for spec in specs:
            runs = pairs[spec]
            cpu = [float(b["cpu_s"]) / float(a["cpu_s"]) for a, b in runs]
            user = [float(b["user_s"]) / float(a["user_s"]) for a, b in runs]
            print(f"{size:>9} {spec:<24} {_median([float(a['cpu_s']) for a, _ in runs]):>10.1f} "
                  f"{_median([float(b['cpu_s']) for _, b in runs]):>8.1f} {_median(cpu):>9.3f} "
                  f"{min(cpu):>5.3f}-{max(cpu):.3f} {_median(user):>10.3f} {min(user):>5.3f}-{max(user):.3f} "
                  f"{_median([float(b['sys_s']) for _, b in runs]):>6.2f}", flush=True)


# cachegrind's simulated caches, fixed so that the counts do not depend on the machine: a core of a
# current server CPU (32 KiB 8-way instruction L1, 48 KiB 12-way data L1, 1 MiB 8-way L2 as the last
# level: each process's own, where a shared L3 depends on the neighbours). `--ll-kib` and `--miss-cycles`
# ask what a smaller share of the last level and a slower miss would cost (docs/results.md, issue 13).
LL_KIB = 1024
MISS_CYCLES = 35


def cachegrind_caches(ll_kib: int = LL_KIB) -> tuple[str, ...]:
    """valgrind's cache options: the fixed L1s and an 8-way last level of `ll_kib` KiB."""
    return ("--I1=32768,8,64", "--D1=49152,12,64", f"--LL={ll_kib * 1024},8,64")


def _whole(text: str, unit: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of {unit}: {text!r}") from None


def ll_size(text: str) -> int:
    """`--ll-kib`: a power of two from 64 KiB (valgrind wants a power-of-two number of 8-way sets)."""
    kib = _whole(text, "KiB")
    if kib < 64 or kib & (kib - 1):
        raise argparse.ArgumentTypeError(f"the last level must be a power of two from 64 KiB, not {kib}")
    return kib


def miss_cost(text: str) -> int:
    """`--miss-cycles`: a whole number of cycles, at least the 5 an LL hit costs."""
    cycles = _whole(text, "cycles")
    if cycles < 5:
        raise argparse.ArgumentTypeError(f"a last-level miss costs at least an LL hit's 5 cycles, not {cycles}")
    return cycles


_CACHEGRIND_EVENTS = {  # valgrind's summary line -> field
    "I refs": "ir", "I1 misses": "i1_miss", "LLi misses": "lli_miss", "D refs": "d_refs", "D1 misses": "d1_miss",
    "LLd misses": "lld_miss", "Branches": "branches", "Mispredicts": "mispredicts",
}


def parse_cachegrind(text: str) -> dict[str, int]:
    """The event totals of valgrind's cachegrind summary (its stderr), by `_CACHEGRIND_EVENTS` field."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"==\d+== ([A-Za-z0-9 ]+?):\s+([\d,]+)", line)
        if m:
            key = " ".join(m.group(1).split())
            if key in _CACHEGRIND_EVENTS:
                counts[_CACHEGRIND_EVENTS[key]] = int(m.group(2).replace(",", ""))
    missing = sorted(set(_CACHEGRIND_EVENTS.values()) - set(counts))
    if missing:
        raise ValueError(f"cachegrind's summary lacks {', '.join(missing)}")
    return counts


def estimated_cycles(c: dict[str, int], miss_cycles: int = MISS_CYCLES) -> int:
    """Cycles of a run modelled from its cache simulation: L1 hits + 5 x LL hits + 35 x LL misses (the
    estimate of pythonspeed.com's "consistent benchmarking in CI" and of iai/iai-callgrind; `miss_cycles`
    instead of 35 if given), over every instruction fetch and data access. Branch mispredictions are left
    out (cachegrind's predictor is much simpler than a current CPU's): they are printed apart."""
    accesses = c["ir"] + c["d_refs"]
    l1_misses = c["i1_miss"] + c["d1_miss"]
    ll_misses = c["lli_miss"] + c["lld_miss"]
    return (accesses - l1_misses) + 5 * (l1_misses - ll_misses) + miss_cycles * ll_misses


def cachegrind_run(trace: Path, spec: str, out: Path, args: argparse.Namespace) -> dict[str, int]:
    """One `equinox simulate` under cachegrind (cache and branch simulation): its event totals."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes", *cachegrind_caches(args.ll_kib),
           "--cachegrind-out-file=/dev/null", *simulate_command(trace, spec, out, args)]
    # One BLAS thread (idle BLAS threads spin for a varying while, which valgrind counts) and one string
    # hash: the same run executes the same instructions every time.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode:  # the command's own error, without valgrind's banner and summary around it
        own = "\n".join(line for line in proc.stderr.splitlines() if not re.match(r"(==|--)\d+(==|--)", line))
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{own[-2000:]}")
    try:
        return parse_cachegrind(proc.stderr)
    except ValueError as exc:
        raise SystemExit(f"{spec} at {trace.name}: {exc}") from None


def cachegrind_main(args: argparse.Namespace) -> None:
    """Each policy's instructions and modelled cycles per request under cachegrind, as ratios to FCFS.

    The counts are the same on every run and machine (cachegrind simulates the caches given), so
    runs go side by side, `--jobs` at a time, and one run per policy and size is enough.
    """
    import concurrent.futures

    if shutil.which("valgrind") is None:
        raise SystemExit("--cachegrind needs valgrind on PATH (Debian: apt-get install valgrind)")
    if args.reference:
        raise SystemExit("--cachegrind runs without the served-alone reference runs: drop --reference")
    if args.repeat > 1:
        raise SystemExit("--cachegrind counts the same on every run: drop --repeat")
    specs = args.policies.split(";")
    _print_setup(args)
    miss = args.miss_cycles
    print(f"valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes {' '.join(cachegrind_caches(args.ll_kib))}; "
          f"whole CLI runs (start-up included); est_cycles = L1 hits + 5 x LL hits + {miss} x LL misses; per request "
          "(LL misses of instruction fetches and of data apart), ratios to fcfs")
    print(f"{'requests':>9} {'policy':<24} {'instr/req':>10} {'L1miss/req':>10} {'LLi/req':>8} {'LLd/req':>8} "
          f"{'mispred/req':>11} {'cycles/req':>10} {'instr_ratio':>11} {'cycle_ratio':>11} {'mispred_ratio':>13}")
    sizes: list[int] = args.sizes
    jobs = [(size, spec) for size in sizes for spec in specs]
    traces = {size: trace_file(size, args) for size in sizes}
    with tempfile.TemporaryDirectory(dir=args.trace_dir) as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {job: pool.submit(cachegrind_run, traces[job[0]], job[1], Path(tmp) / f"run{i}", args)
                   for i, job in enumerate(jobs)}
        for size in sizes:
            base = futures[(size, "fcfs")].result() if "fcfs" in specs else None
            for spec in specs:
                c = futures[(size, spec)].result()
                cycles = estimated_cycles(c, miss)
                ratios = ["-", "-", "-"]
                if base is not None:
                    ratios = [f"{c['ir'] / base['ir']:.3f}", f"{cycles / estimated_cycles(base, miss):.3f}",
                              f"{c['mispredicts'] / base['mispredicts']:.3f}"]
                print(f"{size:>9} {spec:<24} {c['ir'] / size:>10.0f} {(c['i1_miss'] + c['d1_miss']) / size:>10.0f} "
                      f"{c['lli_miss'] / size:>8.1f} {c['lld_miss'] / size:>8.1f} {c['mispredicts'] / size:>11.0f} "
                      f"{cycles / size:>10.0f} {ratios[0]:>11} {ratios[1]:>11} {ratios[2]:>13}", flush=True)


def in_process_main(args: argparse.Namespace) -> None:
    """The simulation loop alone, in this process (the table of docs/results.md before issue 13)."""
    from equinox.cli.simulate import _kv
    from equinox.metrics.collector import Collector
    from equinox.scheduling.interface import PolicyConfig
    from equinox.scheduling.policy import make_policy
    from equinox.sim.backend import CostModelBackend
    from equinox.sim.cost_models import build_cost_model
    from equinox.sim.engine import EngineConfig, make_engine
    from equinox.sim.hardware import StepFlops, make_deployment
    from equinox.sim.loop import Simulator

    print(f"in-process loop only (no loading, no run directory); simulator core: {_core()}")
    print(f"{'requests':>9} {'policy':<24} {'steps':>9} {'wall_s':>8} {'cpu_s':>8} {'req/cpu_s':>9} {'peak_MiB':>8}")
    for size in args.sizes:
        for spec in args.policies.split(";"):
            name, flags = policy_flags(spec)
            params = _kv(flags[1::2], "--policies parameter")  # as `equinox simulate --param` reads them
            specs = sharegpt_like(size, seed=args.seed, rate=args.rate, num_tenants=args.tenants)
            dep = make_deployment("a100-80gb", "llama-2-7b")
            engine = EngineConfig(mode="vllm", num_kv_blocks=dep.num_kv_blocks(16), max_num_seqs=128,
                                  max_num_batched_tokens=4096, block_size=16)
            policy = make_policy(name, PolicyConfig(params=params))
            cost = build_cost_model("vidur", dep)
            policy.set_platform(dep.platform(cost))
            collector = Collector(1.0, StepFlops(dep))  # as `equinox simulate` counts FLOPs
            sim = Simulator(specs, make_engine(engine, policy), CostModelBackend(cost), collector,
                            num_requests_hint=size)
            gc.collect()
            started, cpu0 = time.perf_counter(), time.process_time()
            if args.profile:
                prof = cProfile.Profile()
                stats = prof.runcall(sim.run)
                pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
            else:
                stats = sim.run()
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{size:>9} {spec:<24} {stats.num_steps:>9} {wall:>8.1f} {cpu:>8.1f} {size / cpu:>9.0f} "
                  f"{rss:>8.0f}", flush=True)


def request_counts(text: str) -> list[int]:
    """--sizes: comma-separated positive request counts ('10000,100000')."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give request counts of 1 or more, comma-separated, "
                                         "e.g. 10000,100000")
    return sizes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=request_counts, default="10000,100000",
                   help="comma-separated request counts (1000000 for the target)")
    p.add_argument("--policies", default="fcfs;vtc;equinox;equinox:alpha=1,beta=0",
                   help="';'-separated policies, each optionally NAME:param=value,...")
    p.add_argument("--rate", type=float, default=8.0, help="arrival rate, req/s")
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trace-dir", default=os.path.join(tempfile.gettempdir(), "equinox-sim-speed"),
                   help="where generated traces (and scratch run directories) live")
    p.add_argument("--records-format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--reference", action="store_true", help="keep the served-alone reference runs (timed apart)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds per size, each running every policy once in turn; medians are printed (a shared "
                        "machine)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--paired", action="store_true",
                      help="each policy at the same time as an FCFS run (two cores): CPU ratios to FCFS per round")
    mode.add_argument("--cachegrind", action="store_true",
                      help="instructions and modelled cycles per request under valgrind's cachegrind (the same "
                           "on every run and machine): ratios to FCFS")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="with --cachegrind: runs side by side (their counts do not depend on it)")
    p.add_argument("--ll-kib", type=ll_size, default=LL_KIB,
                   help=f"with --cachegrind: the simulated last level's size in KiB, a power of two (default "
                        f"{LL_KIB}: a core's own L2)")
    p.add_argument("--miss-cycles", type=miss_cost, default=MISS_CYCLES,
                   help=f"with --cachegrind: cycles a last-level miss costs in the estimate (default {MISS_CYCLES})")
    mode.add_argument("--in-process", action="store_true", help="time the simulation loop alone, in this process")
    p.add_argument("--profile", action="store_true", help="with --in-process: cProfile's top functions")
    args = p.parse_args()
    if not args.cachegrind and (args.ll_kib != LL_KIB or args.miss_cycles != MISS_CYCLES):
        p.error("--ll-kib and --miss-cycles shape the cache simulation: they go with --cachegrind")
    if args.in_process:
        in_process_main(args)
    elif args.paired:
        paired_main(args)
    elif args.cachegrind:
        cachegrind_main(args)
    else:
        cli_main(args)


if __name__ == "__main__":
    main()
