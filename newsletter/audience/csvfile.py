"""Subscriber CSV files: read as people really save them, written safe to open.

Comma, semicolon or tab separated (Excel in a German or French locale writes
semicolons), quoted fields, UTF-8 with or without a byte-order mark, CRLF or LF.
Every row keeps the line number it starts on, so a report can point at it.

Every CSV the product writes goes through :func:`writer`, which guards against CSV
injection as OWASP recommends: a cell a spreadsheet would take for a formula (it
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a
leading apostrophe, so ``=HYPERLINK(...)`` in a name stays text. Reading strips the
guard again (:func:`unguard`), so an export imports back exactly as it was.
"""

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from newsletter.core.errors import ImportFileError
from newsletter.core.messages import Message

HEADER_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "email address": "email",
    "e-mail address": "email",
    "mail": "email",
    "name": "name",
    "full name": "name",
    "display_name": "name",
    "display name": "name",
    "language": "language",
    "lang": "language",
    "locale": "language",
}
DELIMITERS = (",", ";", "\t")
# A line ends where CSV and every spreadsheet end one: CRLF, LF or a lone CR. Inside a
# quoted field, U+2028, form feeds and the like are data, not line breaks.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
# OWASP's list of what makes a spreadsheet read a cell as a formula (or run DDE).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
GUARD = "'"


def _needs_guard(cell: str) -> bool:
    # A cell that is a guard followed by a formula start is guarded too ("'=x" -> "''=x"),
    # so that unguard(guard(x)) == x for every x, apostrophes included.
    return cell.lstrip(GUARD).startswith(FORMULA_START)


def guard(cell: str) -> str:
    """The cell as it is written: a formula look-alike gets a leading apostrophe."""
    return GUARD + cell if _needs_guard(cell) else cell


def unguard(cell: str) -> str:
    """The cell as it was before :func:`guard`: the inverse, for reading our own exports."""
    if cell.startswith(GUARD) and _needs_guard(cell[1:]):
        return cell[1:]
    return cell


class _GuardedWriter:
    """``csv.writer`` whose every cell is guarded; the one CSV writer of the product."""

    def __init__(self, out: IO[str], **options: Any) -> None:
        self._writer = csv.writer(out, lineterminator="\n", **options)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([guard("" if cell is None else str(cell)) for cell in row])


def writer(out: IO[str], **options: Any) -> _GuardedWriter:
    """A CSV writer (comma, LF, minimal quoting) that neutralises formula cells."""
    return _GuardedWriter(out, **options)


@dataclass(frozen=True)
class CsvRow:
    line: int
    email: str
    name: str | None
    language: str | None
    # The site's custom fields that have a column in the file: name -> cell (non-empty only).
    fields: Mapping[str, str] = field(default_factory=dict)
    # The source system says never to mail this address (listmonk's "blocklisted"): the
    # import records the person as unsubscribed from the group rather than as a member.
    suppress: bool = False


@dataclass
class CsvFile:
    path: str
    delimiter: str
    rows: list[CsvRow]
    ignored_columns: list[str] = field(default_factory=list)
    # Rows read but deliberately not imported (line, address, why), e.g. a disabled listmonk subscriber.
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    # Rows imported with a part of them left out (line, address, why), e.g. unreadable attributes.
    warnings: list[tuple[int, str, str]] = field(default_factory=list)


def decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(data[: exc.start])) + 1
        raise ImportFileError(
            "{path}:{line}: byte 0x{byte} is not UTF-8; save the file as UTF-8 "
            "(in Excel: 'CSV UTF-8') and import it again",
            path=path,
            line=line,
            byte=f"{data[exc.start]:02x}",
        ) from None


def _pick_delimiter(header: str) -> str:
    # csv.Sniffer guesses from letters too and is easily fooled by a one-column file;
    # the header row alone tells us reliably.
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(lines: list[str], delimiter: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(iter(lines), delimiter=delimiter)
    start = 1
    for record in reader:
        yield start, record
        start = reader.line_num + 1


def read_subscriber_csv(path: Path, fields: Iterable[str] = ()) -> CsvFile:
    """Parse the file into rows; raise :class:`ImportFileError` if it cannot be used at all.

    ``fields`` are the site's custom fields: a column with one of these names is read too.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(
            "cannot read {path}: {reason}", path=str(path), reason=str(exc.strerror or exc)
        ) from None
    return parse_subscriber_csv(data, str(path), fields)


def parse_subscriber_csv(data: bytes, path: str, fields: Iterable[str] = ()) -> CsvFile:
    """:func:`read_subscriber_csv` for a file already in memory (an upload); ``path`` names it in messages."""
    text = decode(data, path)
    aliases = {**HEADER_ALIASES, **{name: name for name in fields}}
    # str.splitlines() would also break at U+2028, U+0085, form feeds ..., and every
    # row after such a character would get the wrong line number.
    lines = io.StringIO(text, newline="").readlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ImportFileError("{path} is empty; it needs a header row with an 'email' column", path=path)
    delimiter = _pick_delimiter(lines[first])
    records = _records(lines[first:], delimiter)
    try:
        _, header = next(records)
        columns = [aliases.get(h.strip().strip('"').lower(), "") for h in header]
        if "email" not in columns:
            raise ImportFileError(
                "{path}:{line}: no 'email' column in the header (found {found}); "
                "the first row must name the columns, e.g. email,name,language",
                path=path,
                line=first + 1,
                found=[repr(h.strip()) for h in header] or [Message("nothing")],
            )
        index: dict[str, int] = {name: columns.index(name) for name in dict.fromkeys(columns) if name}
        extra = [name for name in index if name not in ("email", "name", "language")]
        rows = []
        for line, record in records:
            if not any(cell.strip() for cell in record):
                continue

            def cell(name: str, record: list[str] = record) -> str | None:
                position = index.get(name)
                if position is None or position >= len(record):
                    return None
                return unguard(record[position].strip()) or None

            values = {name: value for name in extra if (value := cell(name)) is not None}
            rows.append(CsvRow(first + line, cell("email") or "", cell("name"), cell("language"), values))
    except csv.Error as exc:
        raise ImportFileError(
            "{path}: not a readable CSV file ({reason})", path=path, reason=str(exc)
        ) from None
    ignored = [h.strip() for h, c in zip(header, columns, strict=True) if not c and h.strip()]
    return CsvFile(path, delimiter, rows, ignored)
