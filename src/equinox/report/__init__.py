"""Reports from run directories: self-contained HTML, Markdown and CSV tables, matplotlib figures.

matplotlib is imported only when a figure is drawn, so `import equinox.report` needs the core only.
"""

from __future__ import annotations

from equinox.report.build import ReportOptions, ReportResult, write_report
from equinox.report.load import ReportError, RunData, load_run, load_runs

__all__ = ["ReportError", "ReportOptions", "ReportResult", "RunData", "load_run", "load_runs", "write_report"]
