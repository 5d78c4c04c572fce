"""Evaluation: datasets read from installed packages, metrics and harnesses."""
