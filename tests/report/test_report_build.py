"""A report from small runs: every file written, every plot a valid image, the HTML fully offline."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from equinox.cli.main import main
from equinox.report import ReportError, ReportResult, write_report
from equinox.report.plots import PlottingUnavailableError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_writes_html_markdown_csv_and_plots(small_report: ReportResult) -> None:
    result = small_report
    assert result.html.is_file() and result.markdown.is_file()
    assert {p.name for p in result.csvs} == {"summary.csv", "tenants.csv"}
    assert not result.problems
    names = {p.path.name for p in result.plots}
    for policy in ("fcfs", "vtc", "equinox"):
        for kind in ("service", "ttft", "utilisation", "batching"):
            assert f"run-{policy}-{kind}.png" in names
    assert "run-equinox-counters.png" in names and "run-vtc-counters.png" in names
    assert any(n.endswith("-cdf.png") for n in names) and any(n.endswith("-bars.png") for n in names)
    summary = (result.out_dir / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 3  # header + one row per run


def test_every_plot_is_a_valid_image(small_report: ReportResult) -> None:
    from matplotlib.image import imread

    result = small_report
    on_disk = sorted((result.out_dir / "plots").glob("*.png"))
    assert sorted(p.path for p in result.plots) == on_disk
    for path in on_disk:
        width, height = _png_size(path)
        assert width >= 300 and height >= 200, path.name
        pixels = imread(path)  # decodes the whole image
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0.01, f"{path.name} is blank"


def test_html_is_self_contained(small_report: ReportResult) -> None:
    result = small_report
    page = result.html.read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    for attr in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attr.startswith(("data:image/png;base64,", "#")), attr[:60]
    assert page.count('src="data:image/png;base64,') == len(result.plots)
    # the markdown points at the plot files, relative to the report directory
    for link in re.findall(r"\]\((plots/[^)]+)\)", result.markdown.read_text()):
        assert (result.out_dir / link).is_file()


def test_cli_report(small_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-report"
    assert main(["report", str(small_runs / "vtc"), str(small_runs / "equinox"), "-o", str(out), "--no-progress"]) == 0
    assert (out / "report.html").is_file()
    assert "report:" in capsys.readouterr().out


def test_cli_report_on_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nope: no such directory" in err and "Traceback" not in err


def test_not_a_run_directory_names_the_expected_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match=r"none of config\.json, summary\.json, requests\.csv"):
        write_report([tmp_path / "empty"], tmp_path / "out")


def test_missing_matplotlib_is_a_clear_error(small_runs: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes `import matplotlib.figure` fail
    with pytest.raises(PlottingUnavailableError, match="pip install matplotlib"):
        write_report([small_runs / "vtc"], tmp_path / "out")


def test_import_equinox_does_not_need_matplotlib() -> None:
    code = ("import sys, equinox, equinox.report, equinox.experiments, equinox.cli.report; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(Path(__file__).parents[2] / "src")})
