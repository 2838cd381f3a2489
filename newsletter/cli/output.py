"""Printing: JSON for scripts, tables and lines for people.

Names, titles, subjects and error texts come from subscribers, feeds and relays, so
anything shown to a person passes through :func:`printable` first. A terminal obeys
the control characters in what it prints: ``ESC [2J`` clears the screen, ``ESC ]8;;URL``
makes a hidden link, ``ESC ]0;...`` retitles the window, C1 characters (U+0080..U+009F)
do the same on some terminals, and U+202E (right-to-left override) shows ``exe.txt``
as ``txt.exe``. Each such character is shown as its Python escape (``\\x1b``,
``\\u202e``) instead: the reader sees that something odd is there, and the terminal
obeys nothing. Table cells are kept on one line, and go to rich as plain text, never
as rich markup (``[link=...]`` in a name stays text).

Every human line of the CLI goes through :func:`echo`, :func:`table` or
:func:`log_handler`; only JSON
(:func:`emit_json`, escaped as JSON escapes) and documents the user asked for
(``editions preview``) are written as they are.
"""

import json
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

# C0 controls but tab and line feed, DEL and the C1 controls; the bidirectional
# overrides and isolates and the marks that steer them; the Unicode line and paragraph
# separators. A message keeps its own tabs and line breaks; a table cell does not.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_IN_A_LINE = re.compile(f"[{_UNSAFE}]")
_IN_A_CELL = re.compile(f"[{_UNSAFE}\t\n]")


def _escape(found: re.Match[str]) -> str:
    return found.group().encode("unicode_escape").decode("ascii")


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with every character a terminal would obey written as its escape (``\\x1b``)."""
    return (_IN_A_CELL if one_line else _IN_A_LINE).sub(_escape, text)


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """One message for a person, on standard output (or error), made printable."""
    click.echo(printable(str(message)), err=err, nl=nl)


class _PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def log_handler(stream: Any = None) -> logging.Handler:
    """A handler for the long-running commands' logs (``daemon``): lines made printable too."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


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


def _cell(value: Any) -> Text:
    return Text("" if value is None else printable(str(value), one_line=True))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    grid = Table(
        *columns, title=None if title is None else _cell(title), box=None, pad_edge=False, header_style="bold"
    )
    count = 0
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
        count += 1
    if count == 0:
        click.echo("(none)")
        return
    console().print(grid)
