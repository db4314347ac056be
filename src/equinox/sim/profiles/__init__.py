"""Fitted cost-model coefficients (JSON, with source attribution and licence inside each)."""
