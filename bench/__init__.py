"""Benchmark scripts, run as files (.venv/bin/python bench/NAME.py).

A package so that their shared helpers import as ``bench.*``.
"""
