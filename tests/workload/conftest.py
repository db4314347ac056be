"""Shared fixtures: the real data directory (tests skip with a reason when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _data_file(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data file {path} is absent (../shared/data not checked out)")
    return path


@pytest.fixture
def data_file():
    """A function: path under ../shared/data, or skip the test saying which file is missing."""
    return _data_file


@pytest.fixture
def write(tmp_path: Path):
    """Write text to a file in tmp_path and return its path."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return _write
