"""`equinox trace inspect | convert | generate | formats` through argparse, as the main CLI calls them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from equinox.cli.trace import add_trace_parser
from equinox.errors import EquinoxError
from equinox.workload.formats import load_trace


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="equinox")
    add_trace_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_generate_then_inspect_then_convert(tmp_path, capsys) -> None:
    out = tmp_path / "g.csv"
    assert run(["trace", "generate", "azure-code", "--duration", "60", "--tenants", "3", "--seed", "2",
                "--rate-scale", "2", "-o", str(out)]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert run(["trace", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tenant-1" in text and "SYNTHETIC" in text and "in p90" in text
    assert run(["trace", "inspect", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["is_synthetic_tenants"] and len(data["tenants"]) == 3
    conv = tmp_path / "g.jsonl"
    assert run(["trace", "convert", str(out), str(conv)]) == 0
    assert load_trace(conv).requests == load_trace(out).requests


def test_inspect_accepts_suites_and_presets(capsys) -> None:
    assert run(["trace", "inspect", "overload"]) == 0
    assert "tenant-2" in capsys.readouterr().out
    assert run(["trace", "formats"]) == 0
    assert "mooncake" in capsys.readouterr().out


def test_convert_with_skip_bad_reports_count(tmp_path, write, capsys) -> None:
    src = write("v.csv", "req_time,adapter_dir,prompt_len,output_len\n0,a,10,4\n1,b,x,4\n")
    assert run(["trace", "convert", str(src), str(tmp_path / "o.csv"), "--skip-bad"]) == 0
    assert "skipped 1 bad row" in capsys.readouterr().out
    with pytest.raises(EquinoxError, match=r"v\.csv:3"):
        run(["trace", "convert", str(src), str(tmp_path / "o.csv")])


def test_import_is_cheap() -> None:
    code = ("import sys, equinox.workload as w; "
            "bad = [m for m in ('numpy', 'equinox.workload.formats', 'equinox.workload.presets') if m in sys.modules];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
