"""Run a ``celery bgp`` subcommand from a Django management command (one implementation)."""
from __future__ import annotations

from typing import Any

from celery.bin.base import CLIContext
from django.core.management.base import CommandError


def run_cli(args: list[str], no_color: bool = False) -> None:
    """Invoke ``celery bgp <args>`` on the project's Celery app, in this process."""
    from celery import current_app

    from celery_bgp.cli import bgp

    app = current_app
    if getattr(app, "bgp", None) is None:
        raise CommandError(
            "the current Celery app has no BackgroundProcessing; import your proj.celery "
            "module in proj/__init__.py, as Celery's Django guide shows"
        )
    try:
        bgp.main(args, prog_name="bgp", standalone_mode=False,
                 obj=CLIContext(app=app, no_color=no_color, workdir=None))
    except SystemExit as exc:
        if exc.code:
            raise CommandError(f"bgp {args[0]} failed", returncode=int(exc.code)) from None


def common(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="Print JSON for scripts.")
