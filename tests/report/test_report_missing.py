"""A run directory with missing or broken files: the report names what is missing and still renders the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

from equinox.report import load_run, write_report


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_files_are_named_not_fatal(small_runs: Path, tmp_path: Path) -> None:
    run = _copy(small_runs / "equinox", tmp_path / "partial")
    (run / "steps.csv").unlink()
    (run / "counters.csv").unlink()
    result = write_report([run], tmp_path / "report")
    text = " ".join(result.problems)
    assert "steps.csv is missing" in text and "counters.csv is missing" in text
    names = {p.path.name for p in result.plots}
    assert "run-partial-service.png" in names and "run-partial-ttft.png" in names
    assert not any(n.endswith(("-utilisation.png", "-batching.png", "-counters.png")) for n in names)
    page = result.html.read_text()
    assert "steps.csv is missing" in page and "counters.csv is missing" in page
    assert "steps.csv is missing" in result.markdown.read_text()


def test_only_a_summary_still_gives_a_table(small_runs: Path, tmp_path: Path) -> None:
    run = tmp_path / "bare"
    run.mkdir()
    shutil.copy(small_runs / "vtc" / "summary.json", run / "summary.json")
    result = write_report([run], tmp_path / "report")
    assert result.html.is_file() and not result.plots
    for name in ("config.json", "requests.csv", "steps.csv", "service.csv", "counters.csv", "fairness_windows.csv"):
        assert any(p.startswith(f"bare: {name} is missing") for p in result.problems), name
    assert "bare" in (tmp_path / "report" / "summary.csv").read_text()


def test_broken_files_are_reported_with_file_and_line(small_runs: Path, tmp_path: Path) -> None:
    run = _copy(small_runs / "vtc", tmp_path / "broken")
    (run / "config.json").write_text("{not json")
    (run / "service.csv").write_text("time,tenant\n0.0,tenant-1\n")  # no weighted_service column
    lines = (run / "requests.csv").read_text().splitlines()
    (run / "requests.csv").write_text("\n".join([*lines[:5], "a,b,c", *lines[5:]]) + "\n")
    loaded = load_run(run)
    text = " | ".join(loaded.problems)
    assert "config.json: not valid JSON (line 1" in text
    assert "service.csv: missing column(s) weighted_service" in text
    assert "requests.csv:6: 3 cells" in text
    result = write_report([run], tmp_path / "report")  # still renders
    assert result.html.is_file()
