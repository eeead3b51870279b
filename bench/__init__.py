"""Benchmark scripts (run as files: .venv/bin/python bench/NAME.py); a package so their shared helpers import as bench.*."""
