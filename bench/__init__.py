"""Benchmarks: ``python -m bench`` runs every module here that has a ``main()``.

Each module prints its figures next to a baseline measured in the same run (so results
compare across machines) and records nothing by itself; docs/benchmarks.md holds the
figures and the command that produced them.
"""
