"""Starts the README tests' fresh-venv installs as soon as the session is collected."""
from __future__ import annotations

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    from .test_readme_fresh_venv import start_installs

    session.config._bgp_fresh_venvs = start_installs(session)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    venvs = getattr(config, "_bgp_fresh_venvs", None)
    if venvs is not None:  # the fixture closes them; this covers a session that never ran it
        venvs.close()
