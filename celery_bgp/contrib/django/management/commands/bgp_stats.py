"""``manage.py bgp_stats``: jobs per state and queue, last hour's throughput."""
from django.core.management.base import BaseCommand

from ._cli import common, run_cli


class Command(BaseCommand):
    help = "Jobs per state and queue, throughput of the last hour, oldest waiting job."

    def add_arguments(self, parser):
        parser.add_argument("--all-environments", action="store_true")
        common(parser)

    def handle(self, *args, **options):
        argv = ["stats", *(["--all-environments"] if options["all_environments"] else []),
                *(["--json"] if options["json"] else [])]
        run_cli(argv, no_color=options["no_color"])
