"""Import optional dependencies with an error that names the pip extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from .exceptions import MissingExtra


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``celery-bgp[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{feature} needs the '{module}' package: pip install 'celery-bgp[{extra}]'"
        ) from exc
