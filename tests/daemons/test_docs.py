"""The README's daemon example runs as written (docs/examples/daemons.py, included by
docs/jobs.rst, runs in tests/unit/test_docs_examples.py)."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers.workers import ROOT
from tests.readme.test_readme_fresh_venv import readme


def test_the_readme_daemon_example_runs_as_written(tmp_path):
    section = readme()["Daemons and swarms"]
    code = section.file("daemon_demo.py")
    (tmp_path / "daemon_demo.py").write_text(code)
    done = subprocess.run([sys.executable, "daemon_demo.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[('prices', 'stopped', {'polls':" in done.stdout
    for words in ("bgp daemon stop", "control_daemon", "--swarm billing-eu", "unless-stopped"):
        assert words in section.text
