"""The ``celery bgp`` subcommands: status, jobs, requeue, cancel, stats, cleanup, db, poison."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import click
from celery.bin.base import CeleryCommand
from rich.markup import escape
from rich.progress import Progress

from ..commands import utcnow
from ..jobs.cancelling import CancelResult
from ..jobs.progress import KEY as PROGRESS_KEY
from ..jobs.progress import shown_progress
from ..jobs.query import Node, P, Q, QueryError
from . import Context, _command, bgp, json_option
from .output import progress_text, state_style

__all__ = ["parse_property"]

_PROPERTY = re.compile(r"^(?P<name>[^<>=~]+?)(?P<op>>=|<=|>|<|=|~)(?P<value>.*)$")
_OPS = {">=": "__ge__", "<=": "__le__", ">": "__gt__", "<": "__lt__", "=": "__eq__"}


def parse_property(text: str) -> Node:
    """``tenant=acme``, ``amount>10``, ``name~app.*`` to a property condition.

    Values are typed like the stored ones: int, float, true/false, ISO datetime,
    else text.
    """
    match = _PROPERTY.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: use NAME=VALUE, NAME>VALUE, NAME~PATTERN ...")
    name, op, raw = match["name"].strip(), match["op"], match["value"]
    value = _typed(raw)
    try:
        if op == "~":
            return P(name).like(raw)
        return getattr(P(name), _OPS[op])(value)
    except QueryError as exc:
        raise click.BadParameter(str(exc)) from None


def _typed(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return raw
    return value if value.tzinfo is not None else raw  # naive: compare as text


def _where(states: tuple[str, ...], queues: tuple[str, ...], name: str | None,
           properties: tuple[str, ...]) -> Node | None:
    parts: list[Node] = []
    if states:
        parts.append(Q(state__in=list(states)))
    if queues:
        parts.append(Q(queue__in=list(queues)))
    if name:
        parts.append(Q(name__like=name))
    parts.extend(parse_property(p) for p in properties)
    where = parts[0] if parts else None
    for part in parts[1:]:
        where = where & part
    return where


def _ctx(as_json: bool) -> Context:
    return Context(click.get_current_context(), as_json)


def _progress(ctx: Context, job: Any, started: datetime | None) -> dict[str, Any] | None:
    """The job's reported progress with its percentage and ETA, or None."""
    report = shown_progress(ctx.jobs.data(job.id).get(PROGRESS_KEY), job.state, started)
    return report.as_dict(started, utcnow()) if report is not None else None


@_command("status")
@click.argument("command_id")
@json_option
def status(command_id: str, as_json: bool, **_: Any) -> None:
    """Events and job state of one command or job."""
    ctx = _ctx(as_json)
    events = ctx.bgp.events.all(command_id)
    job = ctx.jobs.get(command_id) if ctx.bgp.has_jobs else None
    if not events and job is None:
        ctx.out.fail(f"no events and no job for {command_id}")
    history = ctx.jobs.history(command_id) if job is not None else []
    # Asked to stop, not stopped yet: said until the job is Cancelled (or finished).
    stopping = (job is not None and job.state == "Executing"
                and ctx.jobs.store.cancel_requested(job.id))
    started = next((s.elected for s in reversed(history) if s.name == "Executing"), None)
    progress = _progress(ctx, job, started) if job is not None else None
    if ctx.out.as_json:
        ctx.out.json({"id": command_id, "events": events, "job": job, "history": history,
                      "cancel_requested": bool(stopping), "progress": progress})
        return
    if job is not None:
        ctx.out.say(f"[bold]{job.name}[/] {job.id}  state [{state_style(job.state)}]"
                    f"{job.state}[/]{'  [yellow]cancel requested[/]' if stopping else ''}"
                    f"  queue {job.queue}  attempt {job.attempt}")
        if progress is not None:
            ctx.out.say(f"progress  {escape(progress_text(progress))}")
        ctx.out.table("State history", ["#", "state", "elected", "reason"],
                      ([s.sequence, s.name, s.elected, s.reason] for s in history),
                      {1: state_style})
    ctx.out.table("Events (newest first)", ["status", "time", "worker", "error"],
                  ([e.status, e.timestamp, e.worker,
                    e.error and f"{e.error.type}: {e.error.message}"] for e in events),
                  {0: state_style})


@_command("jobs")
@click.option("--state", "states", multiple=True, help="Only jobs in this state (repeatable).")
@click.option("--queue", "queues", multiple=True, help="Only jobs of this queue (repeatable).")
@click.option("--name", help="Callable or command name; * is a wildcard.")
@click.option("--prop", "properties", multiple=True,
              help="Property condition: NAME=VALUE, NAME>10, NAME~pat* (repeatable).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0))
@click.option("--order", default="-created", show_default=True)
@click.option("--all-environments", is_flag=True, help="Not only this app's environment.")
@json_option
def jobs(states, queues, name, properties, limit, offset, order, all_environments, as_json,
         **_: Any) -> None:
    """Search jobs (and commands tracked as jobs)."""
    ctx = _ctx(as_json)
    try:
        where = _where(states, queues, name, properties)
        found = ctx.jobs.search(where, order_by=(order,), limit=limit, offset=offset,
                                all_environments=all_environments)
        total = ctx.jobs.count(where, all_environments=all_environments)
    except QueryError as exc:
        ctx.out.fail(str(exc), code=2)
    # Running jobs only: one read each, at most a page of them.
    progress = {j.id: report for j in found if j.state == "Executing"
                and (report := _progress(ctx, j, j.lock.acquired if j.lock else None))}
    if ctx.out.as_json:
        ctx.out.json({"total": total, "jobs": found, "progress": progress})
        return
    ctx.out.table(f"Jobs ({len(found)} of {total})",
                  ["id", "name", "queue", "pri", "state", "created", "attempt", "worker",
                   "progress"],
                  ([j.id, j.name, j.queue, j.priority, j.state, j.created, j.attempt, j.worker,
                    escape(progress_text(progress[j.id], width=10)) if j.id in progress
                    else None]
                   for j in found), {4: state_style})


def _targets(ctx: Context, ids: tuple[str, ...], states: tuple[str, ...],
             queues: tuple[str, ...], limit: int) -> list[str]:
    if ids:
        return list(ids)
    if not states and not queues:
        ctx.out.fail("give job ids, or select with --state / --queue", code=2)
    return [j.id for j in ctx.jobs.search(_where(states, queues, None, ()), limit=limit)]


def _bulk(ctx: Context, verb: str, ids: list[str], action, yes: bool,
          pending=None, pending_label: str = "requested") -> None:
    """Run ``action`` on each id. With ``pending(result)`` true, the action was only
    asked for (a running job's cancel): such ids are reported apart, as ``requested``."""
    if not ids:
        ctx.out.say(f"nothing to {verb}")
        if ctx.out.as_json:
            ctx.out.json({"done": [], "failed": {}})
        return
    if len(ids) > 1 and not yes and ctx.out.interactive:
        click.confirm(f"{verb.capitalize()} {len(ids)} jobs?", abort=True)
    done, requested, failed = [], [], {}
    with Progress(console=ctx.out.errors, transient=True,
                  disable=not ctx.out.interactive) as progress:
        bar = progress.add_task(verb, total=len(ids))
        for job_id in ids:
            try:
                result = action(job_id)
                (requested if pending is not None and pending(result) else done).append(job_id)
            except Exception as exc:  # report each failure, go on with the rest
                failed[job_id] = f"{type(exc).__name__}: {exc}"
            progress.advance(bar)
    if ctx.out.as_json:
        extra = {"requested": requested} if pending is not None else {}
        ctx.out.json({"done": done, **extra, "failed": failed})
    else:
        asked = f", {len(requested)} {pending_label}" if requested else ""
        ctx.out.say(f"{verb}: {len(done)} done{asked}, {len(failed)} failed")
        for job_id in requested:
            ctx.out.say(f"  [yellow]{job_id}[/]: {pending_label} (still running)")
        for job_id, why in failed.items():
            ctx.out.say(f"  [red]{job_id}[/]: {why}")
    if failed:
        raise SystemExit(1)


@_command("requeue")
@click.argument("ids", nargs=-1)
@click.option("--state", "states", multiple=True, help="Select jobs in this state.")
@click.option("--queue", "queues", multiple=True, help="Select jobs of this queue.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk requeue.")
@json_option
def requeue(ids, states, queues, limit, yes, as_json, **_: Any) -> None:
    """Enqueue jobs again (commands are re-dispatched with the same id)."""
    ctx = _ctx(as_json)
    _bulk(ctx, "requeue", _targets(ctx, ids, states, queues, limit), ctx.jobs.requeue, yes)


@_command("cancel")
@click.argument("ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True,
              help="Also kill the process running each job (SIGTERM, prefork pool), for code "
                   "that ignores its cancellation token; the job ends Cancelled.")
@click.option("--yes", "-y", is_flag=True)
@json_option
def cancel(ids, terminate, yes, as_json, **_: Any) -> None:
    """Cancel waiting jobs now, ask running ones to stop (revoke commands).

    A running job is "cancel requested" until it stops (about a second when its code
    checks its token), then Cancelled; one that finishes first keeps its result.
    """
    ctx = _ctx(as_json)
    if ctx.bgp.has_jobs:
        action = lambda job_id: ctx.jobs.cancel(job_id, terminate=terminate)  # noqa: E731
    else:
        action = lambda job_id: ctx.bgp.cancel(job_id, terminate=terminate)  # noqa: E731
    how = "terminate" if terminate else "cancel"
    _bulk(ctx, "cancel", list(ids), action, yes,
          pending=lambda result: not (isinstance(result, CancelResult) and result.done),
          pending_label=f"{how} requested")


@_command("stats")
@click.option("--all-environments", is_flag=True)
@json_option
def stats(all_environments, as_json, **_: Any) -> None:
    """Jobs per state and queue, throughput of the last hour, oldest waiting job."""
    ctx = _ctx(as_json)
    env = None if all_environments else ctx.jobs.environment
    now = utcnow()
    summary = ctx.jobs.store.summary(env, since=now - timedelta(hours=1))
    if ctx.out.as_json:
        ctx.out.json(summary)
        return
    ctx.out.table("Jobs per state", ["state", "jobs"], sorted(summary.states.items()),
                  {0: state_style})
    rows = []
    for queue, per_state in sorted(summary.queues.items()):
        oldest = summary.oldest_waiting.get(queue)
        wait = f"{(now - oldest).total_seconds():.0f}s" if oldest else ""
        rows.append([queue, sum(per_state.values()), per_state.get("Enqueued", 0),
                     per_state.get("Failed", 0), wait])
    ctx.out.table("Queues", ["queue", "jobs", "enqueued", "failed", "oldest waiting"], rows)
    ctx.out.say(f"finished in the last hour: {summary.finished_since}")


@_command("cleanup")
@click.option("--dry-run", is_flag=True, help="Only count what retention would delete.")
@json_option
def cleanup(dry_run, as_json, **_: Any) -> None:
    """Recover jobs whose worker died, then apply retention now."""
    from ..jobs.monitor import FINISHED_STATES, purge, recover

    ctx = _ctx(as_json)
    retention = ctx.jobs.settings.job_retention
    if dry_run:
        if retention is None:
            doomed = 0
        else:
            before = utcnow() - timedelta(seconds=retention)
            doomed = ctx.jobs.count(Q(state__in=list(FINISHED_STATES)) & Q(modified__lt=before))
        result = {"recovered": 0, "purged": 0, "would_purge": doomed}
    else:
        result = {"recovered": recover(ctx.jobs), "purged": purge(ctx.jobs)}
    if ctx.out.as_json:
        ctx.out.json(result)
    else:
        ctx.out.say(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in result.items()))


@bgp.group("db")
def db() -> None:
    """The SQLAlchemy job store's tables (Alembic migrations shipped with celery-bgp)."""


@db.command("upgrade", cls=CeleryCommand)
@click.argument("revision", default="head")
@json_option
def db_upgrade(revision: str, as_json: bool, **_: Any) -> None:
    """Create or upgrade the job store's tables (to REVISION, default: the newest)."""
    ctx = _ctx(as_json)
    store = ctx.jobs.store
    if not hasattr(store, "engine"):
        ctx.out.fail(f"{type(store).__name__} has no SQLAlchemy tables to migrate (the "
                     "Django store migrates with 'manage.py migrate celery_bgp')")
    from ..contrib.sqlalchemy.migrate import current, upgrade

    before = current(store)
    after = upgrade(store, revision)
    result = {"database": store.engine.url.render_as_string(hide_password=True),
              "from": before, "to": after}
    if ctx.out.as_json:
        ctx.out.json(result)
    else:
        ctx.out.say(f"{result['database']}: {before or 'no tables'} -> {after}")


@bgp.group("poison")
def poison() -> None:
    """Dead-lettered messages of an azurequeue:// broker (list, requeue, purge)."""


def _poison(ctx: Context):
    from ..transport.poison import PoisonQueues

    try:
        return PoisonQueues(ctx.bgp.app.connection_for_write())
    except TypeError:
        ctx.out.fail("poison queues exist on the azurequeue:// broker only")


@poison.command("list", cls=CeleryCommand)
@click.argument("queue")
@click.option("--limit", default=32, show_default=True, type=click.IntRange(1, 32))
@json_option
def poison_list(queue: str, limit: int, as_json: bool, **_: Any) -> None:
    """Peek at a queue's poison messages and why they are there."""
    ctx = _ctx(as_json)
    queues = _poison(ctx)
    messages, total = queues.list(queue, limit), queues.count(queue)
    if ctx.out.as_json:
        ctx.out.json({"queue": queue, "poison_queue": queues.name(queue), "count": total,
                      "messages": messages})
        return
    ctx.out.table(f"Poison messages of {queue} ({queues.name(queue)}, about {total})",
                  ["message id", "reason", "task", "task id", "text"],
                  ([m.id, m.reason, m.task, m.task_id, m.text]
                   for m in messages))


@poison.command("requeue", cls=CeleryCommand)
@click.argument("queue")
@click.option("--id", "ids", multiple=True, help="Only these message ids (repeatable).")
@click.option("--yes", "-y", is_flag=True)
@json_option
def poison_requeue(queue: str, ids: tuple[str, ...], yes: bool, as_json: bool,
                   **_: Any) -> None:
    """Send poison messages back to the queue they came from."""
    ctx = _ctx(as_json)
    queues = _poison(ctx)
    if not yes and not ids and ctx.out.interactive:
        click.confirm(f"Requeue every poison message of {queue}?", abort=True)
    moved = queues.requeue(queue, list(ids) or None)
    ctx.out.json({"requeued": moved}) if ctx.out.as_json else ctx.out.say(f"requeued {moved}")


@poison.command("purge", cls=CeleryCommand)
@click.argument("queue")
@click.option("--id", "ids", multiple=True, help="Only these message ids (repeatable).")
@click.option("--yes", "-y", is_flag=True)
@json_option
def poison_purge(queue: str, ids: tuple[str, ...], yes: bool, as_json: bool, **_: Any) -> None:
    """Delete poison messages for good."""
    ctx = _ctx(as_json)
    queues = _poison(ctx)
    if not yes and not ids and ctx.out.interactive:
        click.confirm(f"Delete every poison message of {queue}? There is no undo.", abort=True)
    deleted = queues.purge(queue, list(ids) or None)
    ctx.out.json({"purged": deleted}) if ctx.out.as_json else ctx.out.say(f"purged {deleted}")
