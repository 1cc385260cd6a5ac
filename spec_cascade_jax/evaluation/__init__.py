"""Evaluation: quality metrics, latency protocol, sweeps and plots."""
