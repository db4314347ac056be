"""The fairness indices reach summary.json, the report's tables and the compare table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from equinox.cli.simulate import row_from_run_dir
from equinox.report import ReportResult


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summary_json_holds_both_sides_and_the_holistic_index(small_runs: Path) -> None:
    doc = json.loads((small_runs / "vtc" / "summary.json").read_text())
    h = doc["holistic"]
    assert h["has_reference"] is True and h["weights"] == {"user": 0.4, "resource": 0.4, "isolation": 0.2}
    for key in ("user_index", "latency_index", "holistic_index"):
        assert 0.0 < h[key] <= 1.0, key
    assert h["capacity_tokens_per_s"] > 0
    tenants = {t["tenant"]: t for t in h["tenants"]}
    assert set(tenants) == {"tenant-1", "tenant-2"}
    assert all(t["gpu_s"] > 0 and t["kv_block_s"] > 0 and t["load_share"] > 0 for t in tenants.values())


def test_service_csv_carries_gpu_and_kv_time(small_runs: Path) -> None:
    rows = _rows(small_runs / "fcfs" / "service.csv")
    assert sum(float(r["gpu_s"]) for r in rows) > 0 and sum(float(r["kv_block_s"]) for r in rows) > 0


def test_report_tables_show_the_indices(small_report: ReportResult) -> None:
    summary = _rows(small_report.out_dir / "summary.csv")
    assert {"user idx", "resource idx", "isolation infl", "holistic idx"} <= set(summary[0])
    assert all(0.0 < float(r["holistic idx"]) <= 1.0 for r in summary)
    tenants = _rows(small_report.out_dir / "tenants.csv")
    assert {"load share", "flooding", "latency infl", "TTFT p90 infl", "GPU s"} <= set(tenants[0])
    assert all(r["flooding"] in ("yes", "no") for r in tenants)
    html = small_report.html.read_text()
    assert "holistic idx" in html and "docs/algorithm.md" in html


def test_compare_row_from_a_run_directory(small_runs: Path) -> None:
    row = row_from_run_dir(small_runs / "equinox")
    assert 0.0 < row["holistic"] <= 1.0 and 0.0 < row["user"] <= 1.0
    assert math.isnan(row["resource"]) or 0.0 < row["resource"] <= 1.0  # 40 s: shorter than one window
