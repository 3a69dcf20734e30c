"""Scoring image sets: judges (per-image attributes), and later the evaluation suites."""
