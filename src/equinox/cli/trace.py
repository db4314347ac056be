"""`equinox trace inspect | convert | generate | formats`: look at, convert and synthesise workloads."""

from __future__ import annotations

import argparse
import json
from typing import Any

from equinox.cli.argtypes import seed
from equinox.errors import ConfigError


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", help="trace format (default: detected); see `equinox trace formats`")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows and report how many")
    p.add_argument("--tenants", dest="tenant_spec", metavar="SPEC",
                   help="tenants for traces without them: zipf:N[:S], round-robin:N, column:NAME, servegen:N")
    p.add_argument("--num-tenants", type=int, help="tenant count (Zipf split for untenanted traces, presets)")
    p.add_argument("--rate", type=float, help="req/s for traces without timestamps (default 1)")
    p.add_argument("--tokenizer", help="tokenizer name or tokenizer.json for text traces (default: 4 chars/token)")
    p.add_argument("--duration", type=float, dest="duration_s", help="keep the first DURATION seconds")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply request rates (compress time)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")


def _load(args: argparse.Namespace, spec: str) -> Any:
    """A workload from a file (with load options) or a preset/suite name."""
    from pathlib import Path

    from equinox.workload import load_workload

    if Path(spec).exists():
        from equinox.workload.build import LoadOptions
        from equinox.workload.formats import load_trace

        opts = LoadOptions(format=args.format, skip_bad=args.skip_bad, tenants=args.tenant_spec,
                           num_tenants=args.num_tenants, seed=args.seed, duration_s=args.duration_s,
                           rate_scale=args.rate_scale, rate=args.rate, tokenizer=args.tokenizer)
        return load_trace(spec, opts)
    if args.format or args.skip_bad or args.rate or args.tokenizer:
        raise ConfigError(f"{spec!r} is not a file; --format, --skip-bad, --rate and --tokenizer apply to files")
    if args.tenant_spec:
        spec = f"{spec}?tenants={args.tenant_spec}"
    return load_workload(spec, seed=args.seed, duration_s=args.duration_s, rate_scale=args.rate_scale,
                         num_tenants=args.num_tenants)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print per-tenant counts, rates, burstiness and length quantiles."""
    from equinox.workload.stats import format_stats, trace_stats

    stats = trace_stats(_load(args, args.file))
    if args.json:
        print(json.dumps(stats.to_dict(), indent=1))
    else:
        print(format_stats(stats))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Read any supported trace and write it in the canonical CSV/JSONL schema."""
    from equinox.workload.io import write_workload

    workload = _load(args, args.input)
    out = write_workload(workload, args.output, args.to)
    extra = f"; skipped {workload.num_skipped_rows} bad row(s)" if workload.num_skipped_rows else ""
    print(f"wrote {len(workload.requests)} requests to {out} ({workload.tenant_label}){extra}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Sample a preset or VTC suite into a canonical trace file."""
    from equinox.workload import load_workload
    from equinox.workload.io import write_workload

    spec = args.preset if not args.tenant_spec else f"{args.preset}?tenants={args.tenant_spec}"
    workload = load_workload(spec, seed=args.seed, duration_s=args.duration_s, rate_scale=args.rate_scale,
                             num_tenants=args.tenants)
    out = write_workload(workload, args.output, args.to)
    print(f"wrote {len(workload.requests)} requests, {len(workload.tenants)} tenants, to {out} "
          f"({workload.tenant_label})")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    """List trace formats, presets and VTC suites."""
    from equinox.workload.formats import TRACE_FORMATS
    from equinox.workload.presets import catalogue

    print("trace formats:")
    for name in TRACE_FORMATS.names():
        print(f"  {name:<22} {TRACE_FORMATS.help(name)}")
    print("workloads (presets and VTC suites):")
    for name, desc in catalogue():
        print(f"  {name:<22} {desc}")
    return 0


def add_trace_parser(subparsers: Any) -> None:
    """Register `equinox trace ...` on the main CLI's subparsers."""
    trace = subparsers.add_parser("trace", help="inspect, convert and generate workload traces")
    sub = trace.add_subparsers(dest="trace_command", metavar="ACTION")
    trace.set_defaults(func=lambda args: (trace.print_help(), 2)[1])

    p = sub.add_parser("inspect", help="per-tenant counts, rates, burstiness and length quantiles")
    p.add_argument("file", help="trace file, preset or VTC suite")
    _add_load_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="convert a trace to the canonical CSV or JSONL schema")
    p.add_argument("input", help="trace file (any supported format), preset or VTC suite")
    p.add_argument("output", help="output file (.csv or .jsonl)")
    p.add_argument("--to", choices=["csv", "jsonl"], help="output format (default: from the suffix)")
    _add_load_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("generate", help="sample a preset or VTC suite into a trace file")
    p.add_argument("preset", help="preset or VTC suite name (see `equinox trace formats`)")
    p.add_argument("--duration", type=float, dest="duration_s", help="run length, s (default: the preset's)")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply every request rate")
    p.add_argument("--tenants", type=int, help="number of tenants (presets; suites have fixed tenants)")
    p.add_argument("--tenant-assignment", dest="tenant_spec", metavar="SPEC",
                   help="how presets split tenants: zipf:N[:S], round-robin:N, servegen:N")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", required=True, help="output file (.csv or .jsonl)")
    p.add_argument("--to", choices=["csv", "jsonl"], help="output format (default: from the suffix)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("formats", help="list trace formats, presets and VTC suites")
    p.set_defaults(func=cmd_formats)
