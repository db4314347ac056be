"""argparse value types shared by the subcommands: a bad value is a one-line `equinox: error:` (exit 2)."""

from __future__ import annotations

import argparse


def seed(text: str) -> int:
    """A random seed: a non-negative integer (numpy's generators take no negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value
