"""`equinox simulate --replicas N --router R --sync-interval Δ`: the simulator's cluster mode (issue 14)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from equinox.cli.table import render
from equinox.config import RunConfig


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Cluster-mode flags of `equinox simulate`."""
    from equinox.sim.cluster import ROUTERS

    p.add_argument("--replicas", type=int, dest="num_replicas",
                   help="simulate N identical replicas behind a router (cluster mode)")
    p.add_argument("--router", choices=ROUTERS,
                   help="round-robin; least-work (fewest requests outstanding); equinox-global (fewest requests "
                        "ahead of this tenant by the merged counters; needs --sync-interval). Default round-robin")
    p.add_argument("--sync-interval", type=float, dest="sync_interval_s", metavar="SECONDS",
                   help="merge the replicas' fairness counters every SECONDS of simulated time (global counters; "
                        "default: each replica keeps its own)")


def is_cluster(args: argparse.Namespace) -> bool:
    """True when any cluster-mode flag was given."""
    return any(getattr(args, f, None) is not None for f in ("num_replicas", "router", "sync_interval_s"))


def run_cluster_simulate(args: argparse.Namespace, config: RunConfig) -> int:
    """Run a cluster simulation, write its run directory (plus cluster.json), print per-tenant rows."""
    from equinox.cli.simulate import _check_some_served, _overall_line, _title, summary_rows
    from equinox.rundir import write_run_dir
    from equinox.sim.cluster import ClusterConfig, run_cluster

    cluster = ClusterConfig(
        num_replicas=args.num_replicas if args.num_replicas is not None else 1,
        router=args.router or "round-robin", sync_interval_s=args.sync_interval_s,
    )
    result = run_cluster(config, cluster)
    _check_some_served(result)
    delta = cluster.sync_interval_s
    counters = f"global counters every {delta:g} s" if delta is not None else "per-replica counters"
    out_path = Path(args.out or Path("runs") / f"{result.workload.name}-{config.policy}-x{cluster.num_replicas}")
    out = write_run_dir(result, out_path)
    (out / "cluster.json").write_text(json.dumps(cluster_doc(result), indent=2) + "\n", encoding="utf-8")
    headers, rows = summary_rows(result)
    print(render(headers, rows, title=f"{_title(result)} | {cluster.num_replicas} replicas, router "
                                      f"{cluster.router}, {counters}"))
    print()
    print(render(["replica", "routed", "steps", "preemptions"],
                 [[r["name"], r["num_routed"], r["num_steps"], r["num_preemptions"]] for r in result.replica_stats]))
    print()
    print(_overall_line(result))
    print(f"run directory: {out}")
    return 0


def cluster_doc(result: Any) -> dict[str, Any]:
    """What cluster.json holds: the cluster settings, per-replica counts, the merged counters at the end."""
    c = result.cluster
    return {
        "num_replicas": c.num_replicas, "router": c.router, "sync_interval_s": c.sync_interval_s,
        "replicas": list(result.replica_stats), "num_reports": result.num_merges, "merged_counters": result.counters,
    }
