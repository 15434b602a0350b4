"""``celery -A proj bgp ...``: commands and jobs from a shell (Celery's plugin group).

Installed through the ``celery.commands`` entry point, so it runs with the
project's own Celery app (``-A``) and its ``bgp`` instance. Every command takes
``--json`` for scripts and exits non-zero when it fails.
"""
from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryCommand

from .output import Output

__all__ = ["bgp"]


class Context:
    """The app's BackgroundProcessing plus the output settings."""

    def __init__(self, click_ctx: click.Context, as_json: bool) -> None:
        app = click_ctx.obj.app
        self.out = Output(as_json, no_color=bool(getattr(click_ctx.obj, "no_color", False)))
        # Load the project as a worker would: Celery's Django fixup sets Django up here
        # (the Django job store needs its apps), and the app's task modules register.
        app.loader.import_default_modules()
        self.bgp: Any = getattr(app, "bgp", None)
        if self.bgp is None:
            self.out.fail(
                f"the Celery app {app.main or '?'} has no BackgroundProcessing: "
                "create one in the module you pass to -A"
            )

    @property
    def jobs(self) -> Any:
        if not self.bgp.has_jobs:
            self.out.fail("this project has no job store (bgp_job_store)")
        return self.bgp.jobs


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def bgp() -> None:
    """celery-bgp: inspect and steer commands and jobs."""


def _command(name: str, **attrs: Any):
    return bgp.command(name, cls=CeleryCommand, **attrs)


from . import azure as _azure  # noqa: E402,F401  (celery bgp scheduled, issue 15)
from . import commands as _commands  # noqa: E402,F401  (registers the subcommands)
from . import daemons as _daemons  # noqa: E402,F401  (celery bgp daemons / daemon, issue 16)
from . import recurring as _recurring  # noqa: E402,F401  (celery bgp recurring, issue 14)
