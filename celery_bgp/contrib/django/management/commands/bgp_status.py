"""``manage.py bgp_status <id>``: events and state of a command or job."""
from django.core.management.base import BaseCommand

from ._cli import common, run_cli


class Command(BaseCommand):
    help = "Show the events and job state of one command or job."

    def add_arguments(self, parser):
        parser.add_argument("id")
        common(parser)

    def handle(self, *args, **options):
        run_cli(["status", options["id"], *(["--json"] if options["json"] else [])],
                no_color=options["no_color"])
