"""Benchmarks: they print figures and assert nothing about time (see bench/README.md)."""
