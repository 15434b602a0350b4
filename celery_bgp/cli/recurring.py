"""``celery -A proj bgp recurring [list | pause NAME | resume NAME | trigger NAME]``."""
from __future__ import annotations

import getpass
from typing import Any

import click

from ..commands import utcnow
from ..exceptions import ImproperlyConfigured
from ..jobs.beat import ScheduleRow, overview
from . import Context, _command, json_option
from .output import state_style

__all__ = ["recurring"]

ACTIONS = ("list", "pause", "resume", "trigger")


def _when(row: ScheduleRow, now: Any) -> str | None:
    if row.paused:
        return "paused"
    if row.due:
        return "due now"
    if row.next_run is None:
        return None
    return f"{row.next_run:%Y-%m-%d %H:%M:%S} (in {int((row.next_run - now).total_seconds())}s)"


def _row(row: ScheduleRow) -> dict[str, Any]:
    record = row.record
    return {"name": row.name, "entry": row.entry, "task": row.task, "schedule": row.every,
            "next_run": row.next_run, "due": row.due, "last_run": row.last_run,
            "last_job": row.last_job.id if row.last_job else None,
            "last_state": row.last_job.state if row.last_job else None,
            "paused": row.paused, "paused_by": record.paused_by if record else None,
            "paused_at": record.paused_at if record else None}


@_command("recurring")
@click.argument("action", type=click.Choice(ACTIONS), default="list")
@click.argument("name", required=False)
@click.option("--by", default=None, help="Who pauses or resumes (default: cli:<OS user>).")
@json_option
def recurring(action: str, name: str | None, by: str | None, as_json: bool, **_: Any) -> None:
    """Recurring jobs and beat's other entries (next and last run, paused or not); pause,
    resume or run one now. A pause is stored in the job store: every worker skips the
    job's beat runs until it is resumed (a run now still runs)."""
    ctx = Context(click.get_current_context(), as_json)
    jobs = ctx.jobs
    if action == "list":
        now = utcnow()
        rows = overview(jobs, now=now)
        if ctx.out.as_json:
            ctx.out.json([_row(r) for r in rows])
            return
        ctx.out.table("Recurring jobs and beat entries",
                      ["name", "schedule", "next run", "last run", "last state", "last job",
                       "paused by"],
                      ([r.name or r.entry, r.every, _when(r, now), r.last_run,
                        r.last_job.state if r.last_job else None,
                        r.last_job.id if r.last_job else None,
                        r.record.paused_by if r.paused and r.record else None] for r in rows),
                      {4: state_style})
        return
    if not name:
        ctx.out.fail(f"recurring {action} needs the recurring job's NAME", code=2)
    who = by or f"cli:{getpass.getuser()}"
    try:
        if action == "trigger":
            job_id = jobs.run_recurring(name)
            if ctx.out.as_json:
                ctx.out.json({"action": action, "name": name, "job_id": job_id})
            else:
                ctx.out.say(f"ran [bold]{name}[/] now: job {job_id}")
            return
        record = (jobs.pause_recurring if action == "pause" else jobs.resume_recurring)(name, who)
    except ImproperlyConfigured as exc:
        ctx.out.fail(str(exc), code=2)
    if ctx.out.as_json:
        ctx.out.json({"action": action, **vars(record)})
        return
    ctx.out.say(f"{action}d [bold]{name}[/] (by {record.paused_by})"
                + (": beat's runs are skipped until it is resumed" if record.paused else ""))
