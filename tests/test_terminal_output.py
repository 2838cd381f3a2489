"""Hostile text in human output: names, titles and errors cannot drive the terminal.

A name from the web sign-up form or a title from a feed may carry escape sequences
(``ESC ]8;;URL BEL`` a hidden link, ``ESC [2J`` a cleared screen, ``ESC ]0;`` a window
title), C1 controls, or a right-to-left override. The CLI runs in-process (click's
CliRunner) against a real database holding such text; the listings must show it
escaped and visible, while ``--json`` gives it back exactly.
"""

import ast
import io
import json
import logging
import re
from pathlib import Path

from sqlmodel import select

from newsletter.cli.output import log_handler
from newsletter.core.models import Source, Subscriber
from newsletter.core.settings import load_settings
from tests.conftest import Cli

CLI_PACKAGE = Path(__file__).parent.parent / "newsletter" / "cli"
LINK = "\x1b]8;;http://evil.example/\x07Click me\x1b]8;;\x07"
CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;you have been hacked\x1b\\"
C1 = "\x9b31mred"
RTL = "invoice-\u202egnp.exe"
HOSTILE = f"Eve {LINK} {CLEAR}{TITLE} {C1} {RTL}"
# Whatever a terminal would act on: C0 but tab and newline, DEL, C1, bidi overrides and isolates.
OBEYED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_harmless(output: str) -> None:
    assert not OBEYED.search(output), repr(output)
    assert "\\x1b]8;;http://evil.example/\\x07Click me" in output, "the escape is shown, not dropped"
    assert "\\u202egnp.exe" in output


def test_subscribers_list_shows_escape_sequences_as_text(cli: Cli) -> None:
    """A member's name with escape sequences is listed escaped; --json returns the name unchanged."""
    cli("subscribers", "add", "uk", "eve@example.org")
    with cli.database() as db:
        # Stored as the web sign-up form stores a name: its escape sequences kept.
        eve = db.exec(select(Subscriber).where(Subscriber.email == "eve@example.org")).one()
        eve.name = HOSTILE
        db.add(eve)
        db.commit()

    listed = cli("subscribers", "list", "uk").stdout
    assert_harmless(listed)
    assert "eve@example.org" in listed
    (member,) = json.loads(cli("subscribers", "list", "uk", "--json").stdout)
    assert member["name"] == HOSTILE


def test_items_list_and_show_escape_a_hostile_title(cli: Cli) -> None:
    """An item title with escape sequences is escaped in `items add`, `list` and `show`; JSON keeps it."""
    added = cli("items", "add", "--title", HOSTILE, "--url", "https://example.org/news/1")
    assert_harmless(added.stdout)
    assert_harmless(cli("items", "list").stdout)
    assert_harmless(cli("items", "show", "1").stdout)
    (item,) = json.loads(cli("items", "list", "--json").stdout)
    assert item["title"] == HOSTILE


def test_rich_markup_in_data_is_text(cli: Cli) -> None:
    """Brackets in a name are not rich markup: no crash on "[/bold]", no hidden link from "[link=...]"."""
    name = "Mallory [/bold] [link=http://evil.example/]x[/link]"
    cli("subscribers", "add", "uk", "m@example.org", "--name", name)
    listed = cli("subscribers", "list", "uk").stdout
    assert "[/bold] [link=http://evil.example/]x[/link]" in listed


def test_status_escapes_a_source_error(cli: Cli) -> None:
    """A feed's last error (server text) goes through the same filter in `status`."""
    source = load_settings(cli.site).sources[0]
    with cli.database() as db:
        # As `collect` records a failed fetch: the server's reason in the error.
        db.add(Source(name=source.name, url=source.url, last_error=f"HTTP 500: {HOSTILE}"))
        db.commit()
    assert_harmless(cli("status").stdout)


def test_error_lines_are_escaped(cli: Cli) -> None:
    """An error that quotes hostile input is one printable line on stderr."""
    cli("items", "add", "--title", "first", "--url", "https://example.org/a")
    cli("items", "add", "--title", HOSTILE, "--url", "https://example.org/b")
    clash = cli("items", "edit", "1", "--url", "https://example.org/b", ok=False)
    assert clash.exit_code != 0
    assert clash.stderr.startswith("error: "), clash.stderr
    assert clash.stderr.count("\n") == 1, clash.stderr
    assert_harmless(clash.stderr)


def test_daemon_log_lines_are_escaped() -> None:
    """The daemon logs source errors and titles through the same filter."""
    stream = io.StringIO()
    log = logging.getLogger("test.terminal")
    handler = log_handler(stream)
    log.addHandler(handler)
    try:
        log.warning("source errors: feed: HTTP 500: %s", HOSTILE)
    finally:
        log.removeHandler(handler)
    assert_harmless(stream.getvalue())


def test_every_human_line_goes_through_output() -> None:
    """Outside output.py, click.echo prints only fixed text and the document `editions preview` writes."""
    calls = []
    for path in sorted(CLI_PACKAGE.glob("*.py")):
        if path.name == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("echo", "secho", "print")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("click", "console", "rich")
            ):
                argument = node.args[0] if node.args else None
                if not isinstance(argument, ast.Constant):
                    calls.append((path.name, ast.unparse(argument) if argument else ""))
    assert calls == [("editions.py", "body")]
