"""Printing: JSON for scripts, tables for people."""

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table


def emit_json(data: Any) -> None:
    def default(value: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return asdict(value)
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return str(value)

    click.echo(json.dumps(data, default=default, ensure_ascii=False, indent=2))


def console() -> Console:
    # Off a terminal (pipes, tests), keep rows whole rather than wrapped at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    grid = Table(*columns, title=title, box=None, pad_edge=False, header_style="bold")
    count = 0
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
        count += 1
    if count == 0:
        click.echo("(none)")
        return
    console().print(grid)
