"""``manage.py bgp_purge``: apply job retention now (and recover jobs of dead workers)."""
from django.core.management.base import BaseCommand

from ._cli import common, run_cli


class Command(BaseCommand):
    help = "Delete finished jobs older than the retention now; recover jobs of dead workers."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true")
        common(parser)

    def handle(self, *args, **options):
        argv = ["cleanup", *(["--dry-run"] if options["dry_run"] else []),
                *(["--json"] if options["json"] else [])]
        run_cli(argv, no_color=options["no_color"])
