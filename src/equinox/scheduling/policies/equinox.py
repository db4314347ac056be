"""Placeholder until the Equinox policy lands (issue 4)."""
