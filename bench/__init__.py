"""Benchmarks of design §8 and issue 6 — figures, not tests: `make bench` (= `python -m bench`).

Each benchmark runs its simulations in a fresh subprocess (`bench.worker`) so that wall time
and peak RSS are that run's own, and writes its figures into `bench/results.json`, from which
`bench/RESULTS.md` is rendered.
"""
