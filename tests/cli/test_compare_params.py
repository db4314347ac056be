"""`equinox compare` hands each policy only its own parameters; a parameter no compared policy has is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equinox.cli.main import main

TINY = ["--duration", "10", "--no-progress", "-j", "1"]


def test_compare_passes_each_policy_its_own_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cmp"
    code = main(["compare", "--policies", "fcfs,vtc,equinox", *TINY, "--alpha", "0.5", "--beta", "0.5",
                 "--param", "cost_function=linear", "-o", str(root)])
    _, err = capsys.readouterr()
    assert code == 0, err
    params = {p: json.loads((root / p / "config.json").read_text())["config"]["policy_params"]
              for p in ("fcfs", "vtc", "equinox")}
    assert params == {"fcfs": {}, "vtc": {"cost_function": "linear"}, "equinox": {"alpha": 0.5, "beta": 0.5}}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["compare", "--policies", "fcfs,vtc", "--alpha", "0.5"],
         "parameter(s) alpha belong to none of the compared policies (fcfs, vtc); their parameters: cost_function"),
        (["simulate", "-p", "vtc", "--alpha", "0.5"], "unknown vtc parameter 'alpha'; known: cost_function"),
        (["simulate", "-p", "fcfs", "--param", "x=1"], "policy 'fcfs' takes no parameters, got 'x'"),
    ],
)
def test_parameters_of_no_policy_are_one_line_errors(args: list[str], needle: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*args, *TINY[:3], "-o", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and err.startswith("equinox: error: ") and needle in err, err
