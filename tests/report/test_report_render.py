"""The HTML report opens in headless Chromium, offline, and the screenshot shows a rendered page (issue #6)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from equinox.report import ReportResult

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"


def _screenshot_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_renders_in_headless_chromium(small_report: ReportResult, tmp_path: Path) -> None:
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip("chromium is not installed (run scripts/setup_chromium.sh to enable this rendering check)")
    from matplotlib.image import imread

    result = small_report
    out = Path(os.environ.get("EQUINOX_SCREENSHOT", tmp_path / "report.png"))
    shot.screenshot(result.html, out, width=1400, height=2400)
    pixels = imread(out)
    assert pixels.shape[:2] == (2400, 1400)
    # The header bar is the report's dark blue, not a blank or error page.
    r, g, b = pixels[20, 700, :3]
    assert b > r and b > 0.3 and r < 0.3, (r, g, b)
    # Plots drew: far more distinct colours than an empty page or a broken-image icon.
    body = pixels[300:, :, :3].reshape(-1, 3)
    assert len({tuple(px) for px in (body[::97] * 255).astype(int).tolist()}) > 50
