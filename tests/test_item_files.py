"""Markdown item files: front matter edge cases, each refused with one line that names the file."""

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from newsletter.collecting.files import read_item_file
from newsletter.core.errors import InputError
from newsletter.core.models import ItemKind

GOOD = """---
title: "Webinar: searching chemistry in PATENTSCOPE"
url: https://www.wipo.int/meetings/en/details.jsp?meeting_id=90123
kind: event
topic: WIPO
groups: [cepiug, uk]
language: en
date: 2026-11-20
start: 2026-12-03T14:00:00+01:00
end: 2026-12-03T15:30:00+01:00
place: Online
translations:
  de: {title: "Webinar: Chemie in PATENTSCOPE", summary: "Kostenlos, *Anmeldung* nötig."}
---
A WIPO trainer walks through the new **chemical structure search**.
"""


def write(tmp_path: Path, text: str | bytes, name: str = "item.md") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_item_file(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


def test_good_file_parses_every_field(tmp_path: Path) -> None:
    """A complete file gives a draft with every field, times converted to UTC."""
    draft = read_item_file(write(tmp_path, GOOD))
    assert draft.title == "Webinar: searching chemistry in PATENTSCOPE"
    assert draft.url == "https://www.wipo.int/meetings/en/details.jsp?meeting_id=90123"
    assert draft.kind == ItemKind.EVENT
    assert draft.topic == "WIPO"
    assert draft.groups == ["cepiug", "uk"]
    assert draft.language == "en"
    assert draft.published_at == datetime(2026, 11, 20, tzinfo=UTC)
    assert draft.event_start == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert draft.event_end == datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
    assert draft.event_place == "Online"
    assert draft.summary_md == "A WIPO trainer walks through the new **chemical structure search**."
    assert draft.translations["de"].title == "Webinar: Chemie in PATENTSCOPE"
    assert draft.translations["de"].summary_md == "Kostenlos, *Anmeldung* nötig."
    assert draft.origin == "file:item.md"


def test_defaults(tmp_path: Path) -> None:
    """Only a title is needed: kind news, no groups (every group), and the site's language."""
    draft = read_item_file(write(tmp_path, "---\ntitle: Just a title\n---\n"), default_language="fr")
    assert (draft.kind, draft.groups, draft.language) == (ItemKind.NEWS, None, "fr")
    assert (draft.url, draft.summary_md, draft.published_at) == (None, "", None)


@pytest.mark.parametrize(
    "text",
    [
        "\ufeff" + GOOD,
        GOOD.replace("\n", "\r\n"),
        "\n\n" + GOOD,
    ],
    ids=["bom", "crlf", "leading-blank-lines"],
)
def test_tolerated_spellings(tmp_path: Path, text: str) -> None:
    """A byte-order mark, Windows line endings or blank lines before the front matter are fine."""
    path = tmp_path / "item.md"
    path.write_bytes(text.encode("utf-8"))
    draft = read_item_file(path)
    assert draft.title == "Webinar: searching chemistry in PATENTSCOPE"
    assert draft.event_place == "Online"


def test_language_spellings_are_normalised(tmp_path: Path) -> None:
    """`de_CH` in the front matter and translation keys are stored in one spelling."""
    path = write(tmp_path, "---\ntitle: x\nlanguage: de_CH\ntranslations:\n  FR: {title: y}\n---\n")
    draft = read_item_file(path)
    assert draft.language == "de-CH"
    assert list(draft.translations) == ["fr"]


def test_single_group_as_text(tmp_path: Path) -> None:
    """`groups: dach` (one name, not a list) means that one group."""
    assert read_item_file(write(tmp_path, "---\ntitle: x\ngroups: dach\n---\n")).groups == ["dach"]


@pytest.mark.parametrize("spelling", ['"2026-11-20"', "'2026-11-20'", "2026-11-20"])
def test_quoted_date_is_a_day(tmp_path: Path, spelling: str) -> None:
    """A date in quotes is the same day as an unquoted one, not a time without a zone."""
    draft = read_item_file(write(tmp_path, f"---\ntitle: x\ndate: {spelling}\n---\n"))
    assert draft.published_at == datetime(2026, 11, 20, tzinfo=UTC)


def test_date_only_deadline_and_datetime_deadline(tmp_path: Path) -> None:
    """A survey deadline may be a date or a date and time; it is stored as a date."""
    text = "---\ntitle: Survey\nkind: survey\ndeadline: {}\n---\n"
    assert read_item_file(write(tmp_path, text.format("2027-01-15"))).deadline == date(2027, 1, 15)
    stamped = read_item_file(write(tmp_path, text.format('"2027-01-15T12:00:00+01:00"'), "b.md"))
    assert stamped.deadline == date(2027, 1, 15)


@pytest.mark.parametrize(
    ("front_matter", "fragment"),
    [
        ("url: https://www.epo.org/x", "'title'"),
        ('title: ""', "'title'"),
        ("title: '   '", "'title'"),
        ("title: [a, b]", "'title' must be text"),
        ("title: x\nauthor: Jane", "author"),
        ("title: x\nTitle: y", "Title"),
        ("title: x\nkind: webinar", "'webinar'"),
        ("title: x\nkind: [event]", "'kind' must be text"),
        ("title: x\ndate: next tuesday", "'date'"),
        ("title: x\ndate: 20261120", "'date'"),
        ("title: x\ndate: 2026-02-30", "date"),
        ("title: x\ndate: 2026-13-01", "date"),
        ("title: x\ndate: 2026-11-20T09:30:00", "time zone"),
        ("title: x\nkind: event\nstart: '2026-12-03T14:00'", "time zone"),
        ("title: x\nkind: event\nstart: someday", "'start'"),
        ("title: x\nkind: event", "start"),
        ("title: x\nkind: event\nstart: 2026-12-03\nend: 2026-12-01", "ends before"),
        ("title: x\nkind: survey", "deadline"),
        ("title: x\nkind: survey\ndeadline: soon", "'deadline'"),
        ("title: x\nurl: javascript:alert(1)", "http"),
        ("title: x\nurl: ftp://ftp.wipo.int/", "http"),
        ("title: x\nlanguage: klingon", "klingon"),
        ("title: x\ngroups: [1, 2]", "'groups'"),
        ("title: x\ngroups: {uk: yes}", "'groups'"),
        ("title: x\ntranslations: [de, fr]", "'translations'"),
        ("title: x\ntranslations: just text", "'translations'"),
        ("title: x\ntranslations:\n  de: Hallo", "'de'"),
        ("title: x\ntranslations:\n  de: {summary: ohne Titel}", "'de'"),
        ("title: x\ntranslations:\n  de: {title: [1, 2]}", "'de'"),
        ("title: x\ntranslations:\n  xx-yy-zz: {title: y}", "xx-yy-zz"),
    ],
)
def test_bad_front_matter(tmp_path: Path, front_matter: str, fragment: str) -> None:
    """Each malformed front matter is refused with one line naming the file and the problem."""
    message = refused(write(tmp_path, f"---\n{front_matter}\n---\nSummary.\n"))
    assert fragment in message, message


def test_no_front_matter_at_all(tmp_path: Path) -> None:
    """Plain Markdown without front matter is refused: it has no title."""
    assert "'title'" in refused(write(tmp_path, "# A heading\n\nSome text.\n"))


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is refused with a line naming it."""
    assert "'title'" in refused(write(tmp_path, ""))


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("---\ntitle: x\ntopic: EPO: news\n---\nbody\n", 3),
        ("---\ntitle: x\nurl: https://www.epo.org/x\nkind: news\n  topic: EPO\n---\n", 5),
        ("---\n\ttitle: x\n---\n", 2),
        ("\n\n---\ntitle: x\nplace: 'unclosed\nkind: news\n---\n", 7),
        ('---\ntitle: "x\n---\n', 3),
    ],
)
def test_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    """A YAML syntax error is reported as FILE:LINE, counting lines of the whole file."""
    path = write(tmp_path, text)
    message = refused(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert "YAML" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    """A Latin-1 file is refused with a line naming it, not a decoding traceback."""
    path = write(tmp_path, "---\ntitle: Café Brevets\n---\nRésumé\n".encode("latin-1"))
    assert "UTF-8" in refused(path)


def test_missing_file(tmp_path: Path) -> None:
    """A file that does not exist is one line naming it."""
    assert "cannot read" in refused(tmp_path / "nowhere.md")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A folder given as an item file is one line naming it."""
    folder = tmp_path / "folder.md"
    folder.mkdir()
    assert "cannot read" in refused(folder)


@pytest.mark.parametrize(
    "content",
    [
        "---\ntitle: x\nauthor: me\n---\n",
        "---\ntitle: x\ndate: 2026-02-30\n---\n",
        "---\ntitle: x\ntopic: EPO: news\n---\n",
        "---\ntitle: Café\n---\n".encode("latin-1"),
        "---\ntitle: x\ngroups: [mars]\n---\n",
    ],
    ids=["unknown-key", "impossible-date", "yaml", "latin-1", "unknown-group"],
)
def test_cli_refuses_bad_file_with_one_line(cli: Any, tmp_path: Path, content: str | bytes) -> None:
    """Through the CLI a bad file is one line on stderr, a non-zero exit, and no item at all."""
    good = write(tmp_path, "---\ntitle: Fine\n---\n", "good.md")
    bad = write(tmp_path, content, "bad.md")
    result = cli("items", "add", "--file", str(good), "--file", str(bad), ok=False)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert str(bad) in line
    assert json.loads(cli("items", "list", "--json").stdout) == []


def test_item_flags_with_a_file_are_refused_not_ignored(cli: Any, tmp_path: Path) -> None:
    """--group or --title next to --file would be silently dropped: the command refuses instead."""
    item = write(tmp_path, "---\ntitle: Fine\n---\n", "item.md")
    result = cli("items", "add", "--file", str(item), "--group", "uk", "--date", "2026-12-01", ok=False)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --date, --group cannot be used with --file: put it in the file's front matter "
        "(e.g. groups: [uk]), or leave --file out\n"
    )
    assert json.loads(cli("items", "list", "--json").stdout) == []
    added = cli("items", "add", "--file", str(item), "--approve")
    assert "(approved): Fine -> *" in added.stdout


# Hostile front matter ---------------------------------------------------------------

LAUGHS = "\n".join(
    [
        "---",
        "title: x",
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "translations: {de: {title: x, summary: *i}}",
        "---",
        "",
    ]
)


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    """A "billion laughs" (aliases of aliases: 9^9 strings expanded) is refused at its first alias."""
    path = write(tmp_path, LAUGHS)
    message = refused(path)
    assert message.startswith(f"{path}:4: "), message
    assert "aliases (*name) are not allowed" in message


def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    """Front matter nested thousands deep is one line naming the file, not a RecursionError."""
    path = write(tmp_path, "---\ntitle: x\ngroups: " + "[" * 5000 + "]" * 5000 + "\n---\n")
    message = refused(path)
    assert message.startswith(f"{path}:3: "), message
    assert "nested more than 20 levels deep" in message


def test_oversized_item_file_is_refused_unread(tmp_path: Path) -> None:
    """An item file over 1 MB is refused with its name before it is parsed."""
    path = write(tmp_path, "---\ntitle: x\n---\n" + "word " * 300_000)
    assert "larger than the 1 MB limit" in refused(path)
