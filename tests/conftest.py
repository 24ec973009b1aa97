"""pytest setup for the trial TestCases in this folder."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _run_in_a_scratch_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Give trial's C{mktemp} a scratch directory, as trial's _trial_temp does."""
    scratch = tmp_path_factory.mktemp("trial_temp")
    previous = os.getcwd()
    os.chdir(scratch)
    yield scratch
    os.chdir(previous)
