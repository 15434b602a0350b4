"""Sphinx configuration of the celery-bgp documentation (built with -W in CI)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "celery-bgp"
author = "celery-bgp developers"
copyright = "2026, celery-bgp developers"  # noqa: A001
from celery_bgp import __version__ as release  # noqa: E402

version = release
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
html_static_path = ["_static"]
exclude_patterns = ["_build"]
nitpicky = False
suppress_warnings = ["ref.python"]
