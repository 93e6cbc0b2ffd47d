"""Benchmarks: timing scripts and pytest-benchmark suites (not part of the default test run)."""
