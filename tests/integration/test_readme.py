"""README.rst's quickstart, run as written against a real worker on Redis."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration


def readme_blocks(section: str) -> list[tuple[str, str]]:
    """(language, code) of each code block in a README section."""
    text = (ROOT / "README.rst").read_text()
    body = text.split(f"\n{section}\n{'=' * len(section)}\n", 1)[1]
    body = re.split(r"\n[^\n]+\n=+\n", body, maxsplit=1)[0]
    blocks = re.findall(r"\.\. code-block:: (\w+)\n\n((?:(?:   .*)?\n)+)", body)
    return [(lang, textwrap.dedent(code)) for lang, code in blocks]


def test_quickstart_as_written(redis_base, tmp_path: Path):
    blocks = readme_blocks("Quickstart")
    (_, proj), (_, session) = [b for b in blocks if b[0] in ("python", "pycon")]
    (tmp_path / "proj.py").write_text(proj)
    (tmp_path / "session.txt").write_text(session)
    with WorkerProcess("proj", {}, ["celery"], cwd=tmp_path) as worker:
        run = subprocess.run(
            [sys.executable, "-m", "doctest", "-v", "session.txt"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert run.returncode == 0, run.stdout + run.stderr + worker.log()
        assert "5 passed and 0 failed" in run.stdout, run.stdout
