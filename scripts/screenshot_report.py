#!/usr/bin/env python3
"""Render an Equinox HTML report to PNG with headless Chromium, offline (issue #6 rendering check).

    python scripts/screenshot_report.py runs/report/report.html -o report.png
    python scripts/screenshot_report.py report.html --width 1400 --height 4000

Exit status: 0 with the screenshot written; 3 when no Chromium is installed (run
scripts/setup_chromium.sh); 1 when Chromium ran but wrote no image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_CHROMIUM = 3


def find_chromium() -> str | None:
    """Path of a Chromium binary ($EQUINOX_CHROMIUM first), or None."""
    env = os.environ.get("EQUINOX_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, out: Path, *, width: int = 1400, height: int = 3000, timeout_s: float = 120.0,
               chromium: str | None = None) -> Path:
    """Render `html` (a local file, no network) to the PNG `out`; raises RuntimeError on failure."""
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium found; install it with scripts/setup_chromium.sh")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory(prefix="equinox-chromium-") as profile:
        cmd = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={width},{height}",
            "--virtual-time-budget=5000", html.resolve().as_uri(),
        ]
        env = {**os.environ, "HOME": profile}  # chromium writes caches under $HOME
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium exited {proc.returncode} without writing {out}:\n{proc.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", type=Path, help="report.html to render")
    ap.add_argument("-o", "--out", type=Path, help="PNG to write (default: next to the HTML, report.png)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before chromium is stopped")
    args = ap.parse_args(argv)
    if not args.html.is_file():
        print(f"screenshot_report: {args.html}: no such file", file=sys.stderr)
        return 2
    if find_chromium() is None:
        print("screenshot_report: chromium is not installed; run scripts/setup_chromium.sh", file=sys.stderr)
        return NO_CHROMIUM
    out = args.out or args.html.with_name(args.html.stem + ".png")
    try:
        path = screenshot(args.html, out, width=args.width, height=args.height, timeout_s=args.timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
