"""Coverage-guided fuzzing (atheris) of each decoder: BGP_FUZZ_RUNS inputs each
(20,000 by default; never fewer than 10,000 under CI)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.workers import ROOT
from tests.reliability.fuzz_targets import SEEDS, TARGETS

RUNS = int(os.environ.get("BGP_FUZZ_RUNS", "20000"))
if os.environ.get("CI"):
    RUNS = max(RUNS, 10_000)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target(target, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS.get(target, [])):
        (corpus / f"seed{i}").write_bytes(seed)
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability.fuzz_targets", target, f"-runs={RUNS}",
         "-max_len=512", "-timeout=10", "-seed=1", f"-artifact_prefix={tmp_path}/",
         str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    done = re.findall(r"Done (\d+) runs", run.stderr)
    assert done and int(done[-1]) >= RUNS, run.stderr[-2000:]
