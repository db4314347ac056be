"""The `equinox` command: simulate/compare/list on tiny workloads, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from equinox.cli.main import main

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ["--duration", "20", "--no-progress"]
CSV_HEADER = ("request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens,max_tokens,prompt_text,"
              "prefix_hashes,tenant_weight\n")


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("equinox: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def tiny_csv(path: Path, rows: list[str]) -> Path:
    path.write_text(CSV_HEADER + "".join(r + "\n" for r in rows))
    return path


def test_simulate_writes_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run_cli(["simulate", "-p", "vtc", *TINY, "-o", str(out_dir)], capsys)
    assert code == 0, err
    assert "policy vtc" in out and "tenant-1" in out and "tenant-2" in out and str(out_dir) in out
    for name in ("config.json", "summary.json", "requests.csv", "steps.csv", "service.csv", "counters.csv",
                 "fairness_windows.csv"):
        assert (out_dir / name).is_file(), name
    summary = json.loads((out_dir / "summary.json").read_text())
    throughput = summary["throughput"]
    assert throughput["num_finished"] + throughput["num_rejected"] == summary["stats"]["num_arrivals"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["config"]["policy"] == "vtc" and config["config"]["duration_s"] == 20


def test_simulate_trace_file_and_rejection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tiny_csv(tmp_path / "tiny.csv", [
        "r0,a,0.0,20,10,,,,", "r1,b,0.5,20,10,,,,", "huge,a,1.0,9000,10,,,,", "r3,b,1.5,20,10,,,,",
    ])
    out_dir = tmp_path / "run"
    code, _, err = run_cli(["simulate", "-p", "fcfs", "-w", str(trace), "--kv-tokens", "4096", "--no-progress",
                              "-o", str(out_dir)], capsys)
    assert code == 0, err
    rows = (out_dir / "requests.csv").read_text().splitlines()
    huge = next(r for r in rows if r.startswith("huge,"))
    assert ",rejected," in huge and "KV" in huge  # reported with a reason; the run went on
    assert sum(",finished," in r for r in rows) == 3


def test_config_file_and_command_line_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('policy = "fcfs"\nduration_s = 20\nseed = 4\n[tenant_weights]\ntenant-1 = 2.0\n')
    code, out, err = run_cli(["simulate", "--config", str(cfg), "--no-progress", "-o", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "policy fcfs" in out
    code, out, err = run_cli(["simulate", "--config", str(cfg), "-p", "lcf", "--seed", "5", "--no-progress",
                              "-o", str(tmp_path / "b")], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert config["policy"] == "lcf" and config["seed"] == 5 and config["tenant_weights"] == {"tenant-1": 2.0}


def test_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cmp"
    code, out, err = run_cli(["compare", "--policies", "fcfs,vtc", "-j", "1", *TINY, "-o", str(root)], capsys)
    assert code == 0, err
    assert "fcfs" in out and "vtc" in out and "svc_diff" in out
    rows = json.loads((root / "compare.json").read_text())
    assert [r["policy"] for r in rows] == ["fcfs", "vtc"]
    assert (root / "fcfs" / "summary.json").is_file() and (root / "vtc" / "summary.json").is_file()


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for needle in ("policies:", "vtc", "fcfs", "gpus:", "a10g", "models:", "llama-2-7b", "cost models:", "workloads:",
                   "overload"):
        assert needle in out
    code, out, _ = run_cli(["list", "gpus"], capsys)
    assert code == 0 and "a10g" in out and "policies:" not in out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["simulate", "-p", "nope"], ["unknown policy 'nope'", "vtc"]),
        (["simulate", "-p", "vtc", "--gpu", "nope"], ["unknown GPU 'nope'", "a10g"]),
        (["simulate", "-p", "vtc", "--model", "nope"], ["unknown model 'nope'"]),
        (["simulate", "-p", "vtc", "--cost-model", "nope"], ["unknown cost model 'nope'"]),
        (["simulate", "-p", "vtc", "--rate-scale", "-1"], ["rate_scale"]),
        (["simulate", "-p", "vtc", "--engine", "slora", "--chunked-prefill"], ["slora", "chunked"]),
        (["simulate", "-p", "rpm"], ["--rpm-limit"]),
        (["simulate", "-p", "vtc", "--kv-blocks", "10", "--kv-tokens", "100"], ["not both"]),
        (["simulate", "-p", "vtc", "--kv-blocks", "-3"], ["num_kv_blocks"]),
        (["simulate", "-p", "vtc", "--block-size", "0"], ["block_size"]),
        (["simulate", "-p", "vtc", "--tp", "0"], ["tensor_parallel"]),
        (["simulate", "-p", "vtc", "--duration", "-5"], ["duration_s"]),
        (["simulate", "-p", "vtc", "--weight", "tenant-1=heavy"], ["--weight", "number"]),
        (["simulate", "-p", "vtc", "--weight", "tenant-1=-2"], ["weight of tenant"]),
        (["simulate", "-p", "vtc", "--param", "novalue"], ["NAME=VALUE"]),
        (["simulate", "-p", "vtc", "--model", "llama-2-70b", "--gpu", "a10g"], ["do not fit"]),
        (["compare", "--policies", "fcfs,nope"], ["unknown policy 'nope'"]),
        (["compare", "--policies", "fcfs,rpm"], ["rpm"]),
        (["compare", "--policies", " , "], ["--policies is empty"]),
    ],
)
def test_bad_options_one_line_error(args: list[str], needles: list[str], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([args[0], *TINY, *args[1:], "-o", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, *needles)


def test_compare_errors_cross_process_pools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Errors raised in worker processes come back as the same one-line error.
    code, _, err = run_cli(["compare", "--policies", "fcfs,vtc", "-j", "2", "--gpu", "nope", *TINY,
                            "-o", str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "unknown GPU 'nope'")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("policy = [", ["not valid TOML"]),
        ("gpu = 5", ["'gpu'", "string"]),
        ("seed = 'x'", ["'seed'", "integer"]),
        ("tenant_weights = 3", ["'tenant_weights'", "table"]),
        ("tenant_weights = { a = 'heavy' }", ["'tenant_weights'", "numbers"]),
        ("enable_chunked_prefill = 'yes'", ["true or false"]),
        ("warp_speed = 9", ["unknown key(s) warp_speed"]),
        ("rate_scale = 0", ["rate_scale"]),
    ],
)
def test_bad_config_file(toml: str, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml + "\n")
    code, _, err = run_cli(["simulate", "-p", "vtc", "--config", str(cfg), *TINY, "-o", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, *needles)


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["simulate", "--config", str(tmp_path / "none.toml"), *TINY], capsys)
    assert_one_line_error(code, err, "none.toml")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("missing.csv", None),
        ("garbage.jsonl", "not json at all\n"),
        ("negative.csv", CSV_HEADER + "r0,a,0.0,-20,10,,,,\n"),
        ("zero_output.csv", CSV_HEADER + "r0,a,0.0,20,0,,,,\n"),
        ("bad_time.csv", CSV_HEADER + "r0,a,soon,20,10,,,,\n"),
    ],
)
def test_malformed_workload_files(name: str, content: str | None, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, _, err = run_cli(["simulate", "-p", "vtc", "-w", str(path), "--no-progress", "-o", str(tmp_path / "o")],
                           capsys)
    assert_one_line_error(code, err, name)


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(["simulate", "-p", "vtc", *TINY, "-o", str(blocker / "run")], capsys)
    assert_one_line_error(code, err)


def test_entry_point_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bad = subprocess.run([sys.executable, "-m", "equinox", "simulate", "-p", "nope", *TINY], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and bad.stderr.startswith("equinox: error: ")
    good = subprocess.run([sys.executable, "-m", "equinox", "simulate", "-p", "fcfs", *TINY, "-o", "run"], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "run" / "summary.json").is_file()


def test_compare_existing_run_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for policy in ("fcfs", "vtc"):
        code, _, _ = run_cli(["simulate", "-p", policy, "--duration", "20", "--no-progress",
                              "-o", str(tmp_path / policy)], capsys)
        assert code == 0
    code, out, _ = run_cli(["compare", "--runs", str(tmp_path / "fcfs"), str(tmp_path / "vtc")], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("fcfs ") for line in lines) and any(line.startswith("vtc ") for line in lines)
    code, _, err = run_cli(["compare", "--runs", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "not a run directory", "summary.json")


# Issue #12: defects found by probing the CLI ---------------------------------------------------

@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["simulate", "-p", "vtc", "--seed", "-1"], ["--seed", "non-negative"]),
        (["simulate", "-p", "vtc", "--kv-blocks", "1"], ["every one of", "rejected", "KV"]),
        (["simulate", "-p", "vtc", "--kv-tokens", "10"], ["kv_capacity_tokens", "--kv-tokens", "10"]),
        (["simulate", "-p", "vtc", "--tp", "3"], ["tensor_parallel=3", "32 attention heads"]),
    ],
)
def test_probed_simulate_options_one_line_error(args: list[str], needles: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([args[0], *TINY, *args[1:], "-o", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, *needles)
    if "--kv-tokens" in args:
        assert "num_kv_blocks" not in err  # the message names the setting the user passed


@pytest.mark.parametrize("command", [["trace", "generate", "overload", "-o", "OUT"], ["trace", "inspect", "overload"]])
def test_negative_seed_in_trace_commands_is_one_line_error(command: list[str], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path / "t.csv") if a == "OUT" else a for a in command]
    code, _, err = run_cli([*args, "--seed", "-1", "--duration", "5"], capsys)
    assert_one_line_error(code, err, "--seed", "non-negative")


@pytest.mark.parametrize(("tenant", "needle"), [("\x00", "control character"), ("a\x00b", "control character"),
                                                (" ", "blank")])
@pytest.mark.parametrize("command", ["inspect", "simulate"])
def test_bad_tenant_in_csv_is_the_same_error_everywhere(tenant: str, needle: str, command: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_csv(tmp_path / "t.csv", [f"r0,{tenant},0.0,10,5,,,,", "r1,b,1.0,10,5,,,,"])
    args = ["trace", "inspect", str(path)] if command == "inspect" else \
        ["simulate", *TINY, "-w", str(path), "-o", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "t.csv:2", "tenant", needle)


def test_empty_tenant_in_jsonl_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival_time": 0, "tenant": "", "num_prompt_tokens": 3, "num_output_tokens": 3}\n')
    code, _, err = run_cli(["trace", "inspect", str(path)], capsys)
    assert_one_line_error(code, err, "tenant is empty")


def test_canonical_jsonl_without_its_metadata_line_is_read_as_jsonl(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival_time": 0, "tenant": "a", "num_prompt_tokens": 3, "num_output_tokens": 3}\n'
                    '{"arrival_time": 1, "tenant": "b", "num_prompt_tokens": 4, "num_output_tokens": 2}\n')
    code, out, err = run_cli(["trace", "inspect", str(path), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["trace_format"] == "equinox-jsonl" and doc["num_requests"] == 2


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["nope"], ["simulate", "--duration", "x"], ["trace", "inspect"], ["gateway", "--port", "x"]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err)


def test_inspect_of_a_workload_cut_to_no_requests(capsys: pytest.CaptureFixture[str]) -> None:
    # found by tests/cli/test_cli_fuzz.py: an empty workload made the length quantiles fail
    code, out, err = run_cli(["trace", "inspect", "overload", "--duration", "0.25", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["num_requests"] == 0
