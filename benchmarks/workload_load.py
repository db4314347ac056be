#!/usr/bin/env python3
"""Loading speed and memory for a 1M-request trace, per format. Prints a table; asserts nothing.

Run: `PYTHONPATH=src python benchmarks/workload_load.py [--rows 1000000]`. Each load runs in a
fresh subprocess so its peak RSS (ru_maxrss) is its own; the baseline RSS of an interpreter
that has imported equinox.workload and numpy is printed for comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time
from equinox.workload.build import LoadOptions
from equinox.workload.formats import load_trace
import numpy
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
w = load_trace(sys.argv[1], LoadOptions(format=sys.argv[2]))
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": len(w.requests), "s": dt, "base_kb": base, "peak_kb": peak}))
"""


def write_files(d: Path, n: int) -> dict[str, Path]:
    """Synthetic 1M-row files in the Azure, Mooncake and canonical layouts."""
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.01, n))
    p = rng.integers(1, 8000, n)
    o = rng.integers(1, 1000, n)
    files = {}
    az = d / "azure.csv"
    with open(az, "w") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for ti, pi, oi in zip(t, p, o, strict=True):
            whole = int(ti)
            fh.write(f"2023-11-16 {whole // 3600 % 24:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}."
                     f"{int((ti - whole) * 1e7):07d},{pi},{oi}\n")
    files["azure"] = az
    mc = d / "mooncake.jsonl"
    with open(mc, "w") as fh:
        for i, (ti, pi, oi) in enumerate(zip(t, p, o, strict=True)):
            fh.write(json.dumps({"timestamp": int(ti * 1000), "input_length": int(pi), "output_length": int(oi),
                                 "hash_ids": [i, i + 1]}) + "\n")
    files["mooncake"] = mc
    cc = d / "canonical.csv"
    with open(cc, "w") as fh:
        fh.write("request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens\n")
        for i, (ti, pi, oi) in enumerate(zip(t, p, o, strict=True)):
            fh.write(f"r{i},tenant-{i % 8 + 1},{float(ti)!r},{pi},{oi}\n")
    files["equinox-csv"] = cc
    return files


def main(argv: list[str] | None = None) -> int:
    """Write the files, load each in a subprocess, print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = write_files(Path(tmp), args.rows)
        print(f"wrote {len(files)} files of {args.rows} rows in {time.perf_counter() - t0:.1f} s")
        print(f"{'format':<14} {'MiB':>7} {'requests':>9} {'load s':>7} {'req/s':>10} {'base MiB':>9} "
              f"{'peak MiB':>9} {'B/request':>10}")
        for fmt, path in files.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), fmt], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            size = path.stat().st_size / 2**20
            per = (r["peak_kb"] - r["base_kb"]) * 1024 / r["n"]
            print(f"{fmt:<14} {size:>7.1f} {r['n']:>9} {r['s']:>7.2f} {r['n'] / r['s']:>10.0f} "
                  f"{r['base_kb'] / 1024:>9.1f} {r['peak_kb'] / 1024:>9.1f} {per:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
