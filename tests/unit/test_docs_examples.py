"""Every runnable example of the documentation runs, and its own assertions hold.

The examples are what a reader copies first; running them here keeps them true as the
API moves. Each runs in a fresh interpreter from ``docs/examples`` (they import
themselves by module name, as a user's project module would be).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs(example):
    done = subprocess.run([sys.executable, example], cwd=EXAMPLES, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_there_are_examples():
    assert len(list(EXAMPLES.glob("*.py"))) >= 5
