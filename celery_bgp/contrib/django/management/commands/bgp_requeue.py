"""``manage.py bgp_requeue [ids] [--state Failed] [--queue q]``: enqueue jobs again."""
from django.core.management.base import BaseCommand

from ._cli import common, run_cli


class Command(BaseCommand):
    help = "Enqueue jobs again (commands are re-dispatched with the same id)."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*")
        parser.add_argument("--state", action="append", default=[])
        parser.add_argument("--queue", action="append", default=[])
        parser.add_argument("--limit", type=int, default=1000)
        parser.add_argument("--yes", "-y", action="store_true")
        common(parser)

    def handle(self, *args, **options):
        argv = ["requeue", *options["ids"], "--limit", str(options["limit"])]
        for state in options["state"]:
            argv += ["--state", state]
        for queue in options["queue"]:
            argv += ["--queue", queue]
        argv += ["--yes"] if options["yes"] or not options["interactive"] else []
        argv += ["--json"] if options["json"] else []
        run_cli(argv, no_color=options["no_color"])

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")
        return parser
