"""``celery -A proj bgp daemons`` and ``celery -A proj bgp daemon stop|start|restart NAME``."""
from __future__ import annotations

from typing import Any

import click

from ..commands import utcnow
from ..daemons import DaemonNotFound
from . import Context, _command, json_option

__all__ = ["daemon_command", "daemons"]

ACTIONS = ("stop", "start", "restart")
_STYLES = {"running": "green", "starting": "cyan", "stopped": "dim", "faulted": "bold red"}


def _ctx(as_json: bool) -> Context:
    ctx = Context(click.get_current_context(), as_json)
    _ = ctx.jobs  # daemons live in the job store: fails clearly without one
    return ctx


def _row(record: Any) -> dict[str, Any]:
    fields = ("name", "scope", "instance", "status", "desired", "worker", "since", "restarts",
              "last_error", "state", "properties")
    return {name: getattr(record, name) for name in fields}


@_command("daemons")
@click.option("--logs", "log_name", metavar="NAME", help="Show this daemon's latest log lines.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def daemons(log_name: str | None, limit: int, as_json: bool, **_: Any) -> None:
    """Every daemon: status, where it runs, since when, restarts, last error, state."""
    ctx = _ctx(as_json)
    api = ctx.bgp.daemons
    if log_name:
        try:
            lines = api.logs(log_name, limit)
        except DaemonNotFound as exc:
            ctx.out.fail(str(exc), code=2)
        if ctx.out.as_json:
            ctx.out.json([{"worker": w, **vars(r)} for w, r in lines])
            return
        ctx.out.table(f"Logs of {log_name} (newest first)", ["time", "level", "worker", "message"],
                      ([r.time, r.level, w, r.message] for w, r in lines))
        return
    found = api.all()
    if ctx.out.as_json:
        ctx.out.json([_row(r) for r in found])
        return
    now = utcnow()
    ctx.out.table("Daemons", ["name", "scope", "worker", "status", "since", "restarts",
                              "last error", "state"],
                  ([r.name if not r.instance else f"  {r.name}@{r.instance}", r.scope,
                    r.worker, r.status if r.desired == "running" else f"{r.status} (stop asked)",
                    r.since and f"{r.since:%Y-%m-%d %H:%M:%S} ({_ago(now, r.since)})",
                    r.restarts, _last_line(r.last_error), r.state]
                   for r in found),
                  {3: lambda v: _STYLES.get(str(v).split(" ")[0])})


def _last_line(text: str | None) -> str | None:
    """A traceback's last line (the exception) is what fits in a table cell."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else None


def _ago(now: Any, then: Any) -> str:
    seconds = int((now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(0, seconds)}s ago"


@_command("daemon")
@click.argument("action", type=click.Choice(ACTIONS))
@click.argument("name")
@json_option
def daemon_command(action: str, name: str, as_json: bool, **_: Any) -> None:
    """Stop, start or restart a daemon (the workers act on it within a heartbeat)."""
    ctx = _ctx(as_json)
    try:
        record = getattr(ctx.bgp.daemons, action)(name)
    except DaemonNotFound as exc:
        ctx.out.fail(str(exc), code=2)
    if ctx.out.as_json:
        ctx.out.json({"action": action, **_row(record)})
        return
    ctx.out.say(f"{action} asked for daemon [bold]{name}[/]: now {record.status}, "
                f"wanted {record.desired}")

