"""Terminal output for ``celery bgp``: rich tables and colours on a TTY, JSON on request."""
from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

__all__ = ["STATE_STYLES", "Output", "progress_text", "to_jsonable"]

#: State / status -> rich style (also used for event statuses).
STATE_STYLES = {
    "Succeeded": "green", "PROCESSED": "green",
    "Failed": "bold red", "ERROR": "bold red",
    "Executing": "cyan", "PROCESSING": "cyan",
    "Enqueued": "blue", "DISPATCHED": "blue",
    "Retrying": "yellow", "RETRYING": "yellow",
    "Awaiting": "magenta", "Idle": "dim", "Created": "dim",
    "Deleted": "dim", "Cancelled": "dim", "CANCELLED": "dim",
}


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and datetimes as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value if not isinstance(value, enum.Flag) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    return value


class Output:
    """Where a command writes: a rich console, or JSON on stdout with ``--json``."""

    def __init__(self, as_json: bool, no_color: bool = False) -> None:
        self.as_json = as_json
        wide = None if sys.stdout.isatty() else 160  # pipes and logs: no 80-column folding
        self.console = Console(no_color=no_color, highlight=False, soft_wrap=False, width=wide)
        self.errors = Console(stderr=True, no_color=no_color, highlight=False)

    @property
    def interactive(self) -> bool:
        """True when a human is watching (progress bars, prompts)."""
        return not self.as_json and sys.stdout.isatty()

    def json(self, value: Any) -> None:
        click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=True))

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
              styles: dict[int, Any] | None = None) -> None:
        table = Table(title=title, title_justify="left", header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        count = 0
        for row in rows:
            cells = []
            for i, cell in enumerate(row):
                text = "" if cell is None else _short(cell)
                style = (styles or {}).get(i)
                if callable(style):
                    style = style(cell)
                cells.append(f"[{style}]{text}[/]" if style else text)
            table.add_row(*cells)
            count += 1
        if count:
            self.console.print(table)
        else:
            self.console.print(f"{title}: nothing found")

    def say(self, message: str) -> None:
        if not self.as_json:
            self.console.print(message)

    def fail(self, message: str, code: int = 1) -> None:
        """Print an error and exit non-zero."""
        if self.as_json:
            click.echo(json.dumps({"error": message}))
        else:
            self.errors.print(f"[bold red]error:[/] {message}")
        raise SystemExit(code)


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, enum.Enum):
        return str(value.value)
    text = value if isinstance(value, str) else json.dumps(to_jsonable(value))
    return text if len(text) <= 80 else text[:77] + "..."


def state_style(value: Any) -> str | None:
    """Rich style of a state or status cell."""
    return STATE_STYLES.get(str(getattr(value, "value", value)))


def progress_text(report: dict[str, Any], width: int = 20) -> str:
    """A job's progress (:meth:`Progress.as_dict`) on one line: a bar, the percentage,
    done of total, the message and the time left (``[####------] 40% 4 of 10 ...``)."""
    percent = report.get("percent")
    done = f"{report['done']:g}" + (f" of {report['total']:g}" if report.get("total")
                                    else " done")
    parts = []
    if percent is not None:
        filled = round(width * percent / 100)
        parts.append(f"[{'#' * filled}{'-' * (width - filled)}] {percent}%")
    parts.append(done)
    if report.get("message"):
        parts.append(report["message"])
    if report.get("remaining_seconds") is not None:
        parts.append(f"about {report['remaining_seconds']:.0f}s left")
    return "  ".join(parts)
