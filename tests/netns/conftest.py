"""Fixtures for the root datapath tests; the bench itself is in datapath.py."""
import pytest

from datapath import topology


@pytest.fixture(scope="session")
def dp_topo():
    yield from topology()
