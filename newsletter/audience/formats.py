"""Subscriber files from other list managers: a listmonk export and a Mailman 3 member list.

Each format is read into the same :class:`~newsletter.audience.csvfile.CsvFile` as our own
CSV, so the import that follows is one code path: the same validation, merging of repeated
addresses, per-row verdicts, dry run and sticky ended memberships.

- ``csv``: our own format (``audience/csvfile.py``).
- ``listmonk``: the subscribers export (``uuid,email,name,attributes,status,created_at,
  updated_at``) or listmonk's import layout (``email,name,attributes``). ``blocklisted``
  people are recorded as unsubscribed from the group, so they are never mailed again and no
  later import or ``add`` revives them; ``disabled`` people are not imported (listmonk does
  not mail them either, but nobody asked to be forgotten). ``attributes`` (a JSON object)
  fill the site's custom fields of the same name, and ``language`` or ``lang`` the language.
- ``mailman``: what ``mailman members`` writes and ``mailman addmembers`` reads: one member
  per line, ``addr``, ``Name <addr>``, ``"Name" <addr>`` or ``addr (Name)``, no header,
  ``#`` comments; or Postorius' CSV with an ``email`` (and ``display_name``) header.
- ``auto``: decided from the first line (:func:`detect`).
"""

import contextlib
import io
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import Literal, get_args

from newsletter.audience.csvfile import (
    DELIMITERS,
    HEADER_ALIASES,
    CsvFile,
    CsvRow,
    decode,
    parse_subscriber_csv,
)
from newsletter.core.errors import ImportFileError

Format = Literal["auto", "csv", "listmonk", "mailman"]
FORMATS: tuple[str, ...] = get_args(Format)
# listmonk's own columns; they are read and turned into status, fields and language.
LISTMONK_COLUMNS = ("uuid", "attributes", "status", "created_at", "updated_at")
LISTMONK_STATUSES = {"enabled", "disabled", "blocklisted"}
# An attributes cell larger than this is not parsed (a real one holds a few fields).
MAX_ATTRIBUTES = 16_384
# Attribute names that fill nothing are reported as ignored, at most this many of them.
MAX_IGNORED_ATTRIBUTES = 20
# RFC 5322's line limit: a longer Mailman line is no address line.
MAX_LINE = 998
# "addr (Name)", the old comment form that Mailman 2 and some address books still write.
_COMMENT_FORM = re.compile(r"^(?P<email>[^\s()<>]+@[^\s()<>]+)\s+\((?P<name>[^()]*)\)$")
# "Name <addr>" and '"Name" <addr>': one address in angle brackets, at the end of the line.
_NAMED_FORM = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>$")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    return ""


def _header_cells(line: str) -> list[str]:
    delimiter = max(DELIMITERS, key=line.count)
    return [cell.strip().strip('"').lower() for cell in line.split(delimiter)]


def detect(data: bytes) -> Format:
    """The format of ``data`` from its first line: listmonk's columns, a bare address, or our CSV."""
    first = _first_line(data[:65_536].decode("utf-8-sig", errors="replace"))
    cells = _header_cells(first)
    if "email" in cells and ("attributes" in cells or {"uuid", "status"} <= set(cells)):
        return "listmonk"
    if "@" in first and not any(HEADER_ALIASES.get(cell) == "email" for cell in cells):
        return "mailman"
    return "csv"


def parse(data: bytes, path: str, fields: Iterable[str] = (), format: Format = "auto") -> CsvFile:
    """``data`` read as ``format`` (``auto``: :func:`detect`); ImportFileError if it cannot be used."""
    chosen = detect(data) if format == "auto" else format
    if chosen == "listmonk":
        return parse_listmonk(data, path, fields)
    if chosen == "mailman":
        return parse_mailman(data, path, fields)
    if chosen == "csv":
        return parse_subscriber_csv(data, path, fields)
    raise ImportFileError(f"unknown file format {format!r}; use one of {', '.join(FORMATS)}")


# -- listmonk --------------------------------------------------------------------------------


def parse_listmonk(data: bytes, path: str, fields: Iterable[str] = ()) -> CsvFile:
    """A listmonk subscriber export: status kept (blocklisted: suppressed), attributes to fields."""
    site_fields = list(fields)
    parsed = parse_subscriber_csv(data, path, [*site_fields, *LISTMONK_COLUMNS])
    rows: list[CsvRow] = []
    skipped: list[tuple[int, str, str]] = []
    warnings: list[tuple[int, str, str]] = []
    unused: set[str] = set()
    for row in parsed.rows:
        own = dict(row.fields)
        status = (own.pop("status", None) or "enabled").lower()
        attributes = own.pop("attributes", None)
        for column in LISTMONK_COLUMNS:
            own.pop(column, None)
        if status not in LISTMONK_STATUSES:
            skipped.append((row.line, row.email, f"listmonk status {status!r} is not known; not imported"))
            continue
        if status == "disabled":
            skipped.append((row.line, row.email, "disabled in listmonk; not imported"))
            continue
        values, language, problem = _attributes(attributes, site_fields, unused)
        if problem:
            warnings.append((row.line, row.email, f"{problem}; attributes ignored"))
        rows.append(
            replace(
                row,
                fields={**values, **own},
                language=row.language or language,
                suppress=status == "blocklisted",
            )
        )
    ignored = [c for c in parsed.ignored_columns if c.lower() not in LISTMONK_COLUMNS]
    ignored += [f"attributes.{name}" for name in sorted(unused)[:MAX_IGNORED_ATTRIBUTES]]
    return CsvFile(parsed.path, parsed.delimiter, rows, ignored, skipped, warnings)


def _attributes(
    cell: str | None, site_fields: list[str], unused: set[str]
) -> tuple[dict[str, str], str | None, str]:
    """The site's fields and a language from an attributes cell, or the reason it was not read.

    The names of attributes that fill nothing are added to ``unused`` (shortened, for the report).
    """
    if not cell:
        return {}, None, ""
    if len(cell) > MAX_ATTRIBUTES:
        return {}, None, f"the attributes are over {MAX_ATTRIBUTES:,} characters"
    try:
        data = json.loads(cell)
    except (ValueError, RecursionError):
        return {}, None, "the attributes are not valid JSON"
    if not isinstance(data, dict):
        return {}, None, "the attributes are not a JSON object"
    values = {
        name: str(value).strip()
        for name in site_fields
        if isinstance(value := data.get(name), str | int | float) and not isinstance(value, bool)
        if str(value).strip()
    }
    if len(unused) < MAX_IGNORED_ATTRIBUTES:
        unused.update(key[:40] for key in data if key not in site_fields and key not in ("language", "lang"))
    language = next(
        (value.strip() for key in ("language", "lang") if isinstance(value := data.get(key), str)),
        None,
    )
    return values, language or None, ""


# -- Mailman 3 -------------------------------------------------------------------------------


def parse_mailman(data: bytes, path: str, fields: Iterable[str] = ()) -> CsvFile:
    """A Mailman member list: one address a line (no header), or Postorius' CSV with a header."""
    text = decode(data, path)
    cells = _header_cells(_first_line(text))
    if any(HEADER_ALIASES.get(cell) == "email" for cell in cells):
        return parse_subscriber_csv(data, path, fields)
    rows: list[CsvRow] = []
    skipped: list[tuple[int, str, str]] = []
    # Lines end at CRLF, LF or CR only (not at U+2028 and the like), so numbers match an editor's.
    for number, line in enumerate(io.StringIO(text, newline="").readlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) > MAX_LINE:
            skipped.append((number, entry[:60] + "...", f"the line is over {MAX_LINE} characters"))
            continue
        form = _COMMENT_FORM.match(entry) or _NAMED_FORM.match(entry)
        if form:
            rows.append(CsvRow(number, form["email"].strip(), _display_name(form["name"]), None))
        else:
            # Anything else goes whole to the address parser, which refuses it with a reason.
            rows.append(CsvRow(number, entry, None, None))
    return CsvFile(path, "\n", rows, [], skipped)


def _display_name(text: str) -> str | None:
    """A display name as a person wrote it: quotes removed, RFC 2047 words decoded.

    The name is read here rather than by the address parser, which refuses unquoted
    non-ASCII names (``Élodie Müller <...>``) that people and older tools write anyway.
    """
    name = text.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    if "=?" in name:
        with contextlib.suppress(ValueError, LookupError, HeaderParseError):
            name = str(make_header(decode_header(name)))
    return name.strip() or None
