"""Fixtures for the replay tests; the helpers live in replaykit.py (a unique module name:
`from conftest import` would pick whichever test directory's conftest loaded last)."""
from replaykit import eve_validator, rules_file, run  # noqa: F401  (fixtures)
