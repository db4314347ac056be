"""Calibration against measurements made elsewhere: measured runs, their replay, fidelity figures."""
