"""CLI fuzz (issue #12): every trace format and flag with generated values and generated trace files.

Every run ends with exit status 0, or 2 and exactly one `equinox: error:` line (no traceback).
The default run tries a few hundred argument lists; `EQUINOX_FUZZ_EXAMPLES=3000` tries thousands.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from equinox.cli.main import main
from equinox.workload.formats import TRACE_FORMATS

NUM_EXAMPLES = int(os.environ.get("EQUINOX_FUZZ_EXAMPLES", "100"))
PHASES = (Phase.explicit, Phase.reuse, Phase.generate) if os.environ.get("EQUINOX_FUZZ_NO_SHRINK") else tuple(Phase)
WORK = Path(tempfile.mkdtemp(prefix="equinox-cli-fuzz-"))
CANONICAL_FIELDS = ("request_id", "tenant", "arrival_time", "num_prompt_tokens", "num_output_tokens", "max_tokens",
                    "prompt_text", "prefix_hashes", "tenant_weight")

numbers = st.one_of(st.integers(min_value=-3, max_value=10**12).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["", "x", "-0", "1e400", "nan", "0x10", " 5", "\x00"]))
cells = st.one_of(numbers, st.text(max_size=8), st.sampled_from(["", "a", "tenant-1", " ", "\x00", '"', ","]))
json_cells = st.one_of(st.none(), st.booleans(), st.integers(min_value=-5, max_value=10**9),
                       st.floats(allow_nan=False), st.text(max_size=8), st.lists(st.integers(), max_size=3))


NUM_TRIED = 0


@st.composite
def trace_files(draw: st.DrawFn) -> str:
    """A small trace file: canonical CSV/JSONL rows with generated cells, or arbitrary text."""
    kind = draw(st.sampled_from(["csv", "jsonl", "jsonl-meta", "text", "json"]))
    path = WORK / f"t{draw(st.integers(0, 10**9))}.{'jsonl' if kind.startswith('jsonl') else kind}"
    rows = draw(st.integers(0, 4))
    if kind == "csv":
        fields = draw(st.lists(st.sampled_from(CANONICAL_FIELDS), min_size=1, max_size=6, unique=True))
        lines = [",".join(fields)] + [",".join(draw(cells).replace("\n", " ") for _ in fields) for _ in range(rows)]
        path.write_text("\n".join(lines) + "\n")
    elif kind.startswith("jsonl"):
        objs = [draw(st.dictionaries(st.sampled_from(CANONICAL_FIELDS), json_cells, max_size=6)) for _ in range(rows)]
        if kind == "jsonl-meta":
            objs.insert(0, {"equinox_workload": draw(st.dictionaries(st.text(max_size=5), json_cells, max_size=3))})
        path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    elif kind == "json":
        path.write_text(json.dumps(draw(st.lists(st.dictionaries(st.text(max_size=8), json_cells, max_size=4),
                                                 max_size=3))))
    else:
        path.write_text(draw(st.text(max_size=200)))
    return str(path)


formats = st.sampled_from([*TRACE_FORMATS.names(), "csv", "jsonl", "nope"])
workloads = st.one_of(st.sampled_from(["overload", "nope"]), trace_files())
load_flags = st.lists(st.one_of(
    st.tuples(st.just("--format"), formats), st.tuples(st.just("--seed"), numbers),
    st.tuples(st.just("--num-tenants"), numbers), st.tuples(st.just("--rate"), numbers),
    st.tuples(st.just("--duration"), numbers), st.tuples(st.just("--rate-scale"), numbers),
    st.tuples(st.just("--tenants"), st.sampled_from(["zipf:3", "round-robin:2", "column:tenant", "column:", "x:1",
                                                     "zipf:0", "servegen:2", ""])),
    st.just(("--skip-bad",))), max_size=3)
sim_flags = st.lists(st.one_of(
    st.tuples(st.sampled_from(["--seed", "--kv-blocks", "--kv-tokens", "--tp", "--block-size", "--max-num-seqs",
                               "--max-num-batched-tokens", "--tenants", "--rate-scale", "--alpha", "--beta",
                               "--rpm-limit"]), numbers),
    st.tuples(st.just("-p"), st.sampled_from(["vtc", "fcfs", "equinox", "rpm", "nope"])),
    st.tuples(st.just("--engine"), st.sampled_from(["vllm", "slora", "nope"])),
    st.tuples(st.just("--weight"), st.sampled_from(["a=2", "=2", "a=", "a=-1", "tenant-1=x"]))), max_size=3)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    """One command line."""
    command = draw(st.sampled_from(["inspect", "convert", "generate", "simulate", "formats", "list"]))
    flat = [x for flag in draw(load_flags) for x in flag]
    if command == "inspect":
        return ["trace", "inspect", draw(workloads), *flat, *draw(st.sampled_from([[], ["--json"]]))]
    if command == "convert":
        out = str(WORK / f"out{draw(st.integers(0, 10**6))}.{draw(st.sampled_from(['csv', 'jsonl', 'txt']))}")
        return ["trace", "convert", draw(workloads), out, *flat]
    if command == "generate":
        extra = [x for flag in draw(st.lists(st.tuples(st.sampled_from(["--seed", "--duration", "--tenants",
                                                                        "--rate-scale"]), numbers), max_size=3))
                 for x in flag]
        out = str(WORK / f"gen{draw(st.integers(0, 10**6))}.{draw(st.sampled_from(['csv', 'jsonl', 'txt']))}")
        return ["trace", "generate", draw(st.sampled_from(["overload", "nope"])), "-o", out, "--duration", "5",
                *extra]
    if command == "simulate":
        flags = [x for flag in draw(sim_flags) for x in flag]
        return ["simulate", "-w", draw(workloads), "--duration", "5", "--no-progress", "-o",
                str(WORK / "sim"), *flags]
    return ["trace", "formats"] if command == "formats" else ["list"]


@settings(max_examples=NUM_EXAMPLES, deadline=None, derandomize=True, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(argv=argvs())
def test_every_command_line_succeeds_or_fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    global NUM_TRIED
    NUM_TRIED += 1
    code = main(argv)
    _, err = capsys.readouterr()
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("equinox: error: "), (argv, err)


def test_report_cases_tried() -> None:
    """Print how many command lines the fuzz above ran (the figure in docs)."""
    print(f"\nCLI fuzz: {NUM_TRIED} command lines, every one exit 0 or a one-line error with exit 2")
