"""The CLI's promises: documented commands, --json on listings, a curated API, one-line errors."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import newsletter
from newsletter.cli import COMMANDS as LAZY_COMMANDS
from newsletter.cli import main


def walk(
    command: click.Command, path: tuple[str, ...] = ("newsletter",)
) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        # Through list_commands and get_command: the top-level group loads its commands lazily.
        context = click.Context(command, info_name=path[-1])
        for name in sorted(command.list_commands(context)):
            sub = command.get_command(context, name)
            assert sub is not None, name
            yield from walk(sub, (*path, name))


COMMANDS = list(walk(main))


def test_the_tree_has_the_documented_commands() -> None:
    """The commands the README promises exist (so the walk below is not vacuous)."""
    names = {name for name, _ in COMMANDS}
    for expected in (
        "newsletter init",
        "newsletter check",
        "newsletter status",
        "newsletter items add",
        "newsletter items list",
        "newsletter items show",
        "newsletter items approve",
        "newsletter items reject",
        "newsletter items edit",
        "newsletter subscribers import",
        "newsletter subscribers list",
    ):
        assert expected in names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_is_documented(name: str, command: click.Command) -> None:
    """Every command has a help sentence, and every option a description of its own."""
    help_text = (command.help or "").strip()
    assert help_text, f"{name} has no help"
    summary = help_text.splitlines()[0]
    assert summary[0].isupper(), summary
    assert summary.rstrip().endswith((".", ":")), summary
    assert command.get_short_help_str(limit=200).strip()
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in {"help", "version"}:
            assert (param.help or "").strip(), f"{name} {param.opts[0]} has no help"


def test_item_commands_explain_their_arguments() -> None:
    """The item commands name their ID argument in their help, so `--help` says what it is."""
    for name, command in COMMANDS:
        if name.startswith("newsletter items "):
            for param in command.params:
                if isinstance(param, click.Argument):
                    metavar = re.sub(r"[\[\].]", "", param.human_readable_name)
                    assert re.search(rf"\b{metavar}\b", command.help or ""), (name, metavar)


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_help_runs(name: str, command: click.Command) -> None:
    """`COMMAND --help` prints usage and the summary for every command, with exit 0 and no site needed."""
    args = name.split()[1:]
    result = CliRunner().invoke(main, [*args, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: {name}")
    assert (command.help or "").strip().splitlines()[0][:40] in result.stdout


def test_commands_with_examples() -> None:
    """The top-level help and every command show examples to copy (the README says so)."""
    names = ["newsletter", *(name for name, command in COMMANDS if not isinstance(command, click.Group))]
    for name in names:
        help_text = dict(COMMANDS)[name].help or ""
        assert re.search(r"(Example|Quick tour)", help_text), name
        # A command line to copy, maybe after environment settings (NAME=value ...).
        assert re.search(r"^\s+(\S+=\S+ )*newsletter \S+", help_text, re.MULTILINE), name


# --- --json ------------------------------------------------------------------------------


@pytest.fixture
def populated(cli: Any, tmp_path: Path) -> Any:
    """The example site with a few subscribers and items."""
    csv = tmp_path / "people.csv"
    csv.write_text("email,name,language\nada@example.org,Ada,en\nbo@example.org,Bo,\n", encoding="utf-8")
    cli("subscribers", "import", "uk", str(csv))
    cli("items", "add", "--title", "One", "--url", "https://www.epo.org/1", "--group", "uk")
    cli("items", "add", "--title", "Two", "--summary", "Ünïcödé *text*")
    return cli


@pytest.mark.parametrize(
    ("args", "shape"),
    [
        (["subscribers", "list", "uk"], list),
        (["items", "list"], list),
        (["items", "list", "--status", "proposed", "--group", "uk"], list),
        (["status"], dict),
        (["check"], dict),
    ],
)
def test_listing_commands_print_json(populated: Any, args: list[str], shape: type) -> None:
    """Every listing command takes --json and prints one valid JSON document and nothing else."""
    result = populated(*args, "--json")
    data = json.loads(result.stdout)
    assert isinstance(data, shape)
    assert data
    assert result.stderr == ""


def test_json_content_is_usable(populated: Any) -> None:
    """The JSON holds the real values: addresses, titles, targets, non-ASCII text as is."""
    members = json.loads(populated("subscribers", "list", "uk", "--json").stdout)
    assert sorted(m["email"] for m in members) == ["ada@example.org", "bo@example.org"]
    items = json.loads(populated("items", "list", "--json").stdout)
    assert {i["title"]: i["groups"] for i in items} == {"One": ["uk"], "Two": ["*"]}
    raw = populated("items", "list", "--json").stdout
    assert "Ünïcödé" in raw


def test_empty_listings_are_empty_json(cli: Any) -> None:
    """An empty listing is still valid JSON: an empty list."""
    assert json.loads(cli("items", "list", "--json").stdout) == []
    assert json.loads(cli("subscribers", "list", "fr", "--json").stdout) == []


def test_check_json_on_broken_site(site_dir: Path, cli: Any) -> None:
    """`check --json` stays valid JSON when there are problems, and still exits 1."""
    (site_dir / "schedules" / "broken.toml").write_text('cron = "every day"\ngroups = ["uk"]\n')
    result = cli("check", "--json", ok=False)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [p["line"] for p in report["problems"]] == [1]


# --- python -m and the public API --------------------------------------------------------


def test_python_m_newsletter() -> None:
    """`python -m newsletter --help` runs the same CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ")
    for command in ("init", "check", "status", "items", "subscribers"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command
    assert "Traceback" not in done.stderr


def test_python_m_newsletter_error_is_one_line(tmp_path: Path) -> None:
    """Through the real entry point too, an error is one line on stderr and a non-zero status."""
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--site", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "newsletter init" in done.stderr


def test_a_reader_that_stops_early_is_not_an_error(cli: Any, tmp_path: Path) -> None:
    """`newsletter subscribers export G | head -1`: no error line, no traceback."""
    rows = "".join(f"member{n}@example.org,Member {n}\n" for n in range(4000))
    members = tmp_path / "many.csv"
    members.write_text("email,name\n" + rows, encoding="utf-8")
    cli("subscribers", "import", "uk", str(members))
    command = [sys.executable, "-m", "newsletter", "--site", str(cli.site), "--database-url", cli.db_url]
    export = subprocess.Popen(
        [*command, "subscribers", "export", "uk"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert export.stdout is not None
    assert export.stderr is not None
    assert export.stdout.readline().startswith(b"email")
    export.stdout.close()  # the reader goes away with about 150 KB still to come
    errors = export.stderr.read().decode()
    export.wait(timeout=120)
    assert errors == ""
    assert export.returncode in (0, 1)  # 1: Click's quiet exit on a broken pipe


# Libraries that `newsletter --help` and `--version` must not import (each costs tens to
# hundreds of milliseconds); a command imports what it needs when it runs.
HEAVY = (
    "alembic", "apscheduler", "babel", "dkim", "email_validator", "feedparser", "httpx", "jinja2",
    "mjml", "pydantic", "rich", "sqlalchemy", "sqlmodel", "starlette", "uvicorn",
)  # fmt: skip
PROBE = """
import json, sys
from newsletter.cli import main
try:
    main(sys.argv[1:], prog_name="newsletter")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "loaded": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_by(*args: str) -> list[str]:
    """The heavy libraries a fresh interpreter has imported after `newsletter ARGS` (which must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done
    return sorted({name.split(".")[0] for name in report["loaded"]} & set(HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_no_library(args: list[str]) -> None:
    """`newsletter --help` and `--version` import click and the CLI module only, no library behind it."""
    assert loaded_by(*args) == []


def test_the_probe_sees_what_a_command_imports() -> None:
    """The probe above is not blind: a command's own help loads that command's libraries."""
    assert {"jinja2", "mjml", "sqlalchemy"} <= set(loaded_by("editions", "--help"))


def test_an_idle_tick_does_not_load_the_migrations_or_the_fetchers(site_dir: Path, tmp_path: Path) -> None:
    """`run-due` from cron with nothing due checks the schema without alembic and loads no stage.

    The schema check compares the database with core/db.py's SHIPPED_HEADS; the fetchers
    and parsers load only when a source is due, the edition builder and renderer only
    when a slot is built, the runner and message builders only when something is sent
    (scheduling/scheduler.py, docs/performance.md).
    """
    from tests.conftest import Cli

    cli = Cli(site_dir, f"sqlite:///{tmp_path / 'tick.db'}")
    moment = ["run-due", "--at", "2026-11-30T09:00:00+01:00"]
    cli(*moment)  # collects the sample feeds and builds what is due at that moment
    args = ["--site", str(site_dir), "--database-url", cli.db_url, *moment]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done
    loaded = set(report["loaded"])
    assert "sqlalchemy" in loaded  # the probe sees the command's own libraries
    stages = {
        "alembic",
        "feedparser",
        "trafilatura",
        "courlan",
        "httpx",
        "jinja2",
        "mjml",
        "newsletter.collecting.collect",
        "newsletter.editions.build",
        "newsletter.editions.render",
        "newsletter.delivery.message",
        "newsletter.delivery.runner",
        "newsletter.delivery.probes",
        "newsletter.delivery.confirmations",
    }
    assert loaded & stages == set()


def test_lazy_summaries_match_the_commands() -> None:
    """Each summary the top-level help shows without importing a command is that command's own."""
    context = click.Context(main, info_name="newsletter")
    assert sorted(LAZY_COMMANDS) == main.list_commands(context)
    for name, (_module, _attribute, summary) in LAZY_COMMANDS.items():
        command = main.get_command(context, name)
        assert command is not None, name
        assert command.name == name
        assert command.get_short_help_str(limit=1000) == summary, name
    shown = CliRunner().invoke(main, ["--help"]).stdout
    assert all(f"  {name} " in shown for name in LAZY_COMMANDS), shown


def test_public_api() -> None:
    """`newsletter.__all__` names real, public objects of the package, each once."""
    names = newsletter.__all__
    assert names
    assert len(names) == len(set(names))
    for name in names:
        assert not name.startswith("_"), name
        obj = getattr(newsletter, name)
        assert getattr(obj, "__module__", "").startswith("newsletter."), name
    namespace: dict[str, Any] = {}
    exec("from newsletter import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(names)
    for expected in ("NewsletterError", "Settings", "load_settings", "add_item", "ItemDraft"):
        assert expected in names


def test_public_errors_share_one_base() -> None:
    """Every exception class exported is a NewsletterError with a non-zero exit code."""
    for name in newsletter.__all__:
        obj = getattr(newsletter, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, newsletter.NewsletterError), name
            assert obj.exit_code != 0


# --- bad input ---------------------------------------------------------------------------


def bad_inputs(site: Path, tmp: Path) -> list[list[str]]:
    latin1 = tmp / "latin1.csv"
    latin1.write_bytes("email,name\nzoe@example.org,Zoë\n".encode("latin-1"))
    bad_item = tmp / "bad.md"
    bad_item.write_text("---\ntitle: x\nkind: rumour\n---\n")
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    return [
        ["frobnicate"],
        ["--transport", "pigeon", "status"],
        ["--transport", "memory", "editions", "send", "1"],  # would mark an edition sent unread
        ["--database-url", "mysql://news@db/news", "status"],
        ["--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none", "status"],
        ["--database-url", f"sqlite:///{a_file}/news.db", "status"],
        ["status", "--verbose"],
        ["init", str(site)],
        ["items", "show", "999"],
        ["items", "show", "abc"],
        ["items", "approve"],
        ["items", "approve", "999"],
        ["items", "reject", "1", "2"],
        ["items", "add"],
        ["items", "add", "--title", "   "],
        ["items", "add", "--title", "T", "--kind", "rumour"],
        ["items", "add", "--title", "T", "--url", "javascript:alert(1)"],
        ["items", "add", "--title", "T", "--date", "tomorrow"],
        ["items", "add", "--title", "T", "--date", "2026-11-20T10:00"],
        ["items", "add", "--title", "T", "--group", "mars"],
        ["items", "add", "--title", "T", "--language", "klingon"],
        ["items", "add", "--file", str(tmp / "missing.md")],
        ["items", "add", "--file", str(bad_item)],
        ["items", "add", "--file", str(tmp)],
        ["items", "list", "--group", "mars"],
        ["items", "list", "--status", "maybe"],
        ["items", "edit", "1", "--title", "x"],
        ["items", "edit", "abc"],
        ["subscribers", "list", "mars"],
        ["subscribers", "import", "mars", str(latin1)],
        ["subscribers", "import", "uk", str(tmp / "missing.csv")],
        ["subscribers", "import", "uk", str(latin1)],
        ["subscribers", "add", "uk", "not-an-address"],
        ["subscribers", "remove", "uk", "nobody@example.org"],
        ["subscribers", "forget", "nobody@example.org", "--yes"],
        ["editions", "preview", "1", "--language", "xx"],
        ["send-test", "1", "--to", "editor@example.org", "--language", "es"],
        ["collect", "--source", "nosuch"],
    ]


def test_bad_inputs_are_one_line_errors(cli: Any, tmp_path: Path) -> None:
    """Bad input anywhere gives a non-zero exit, exactly one line on stderr, and no traceback."""
    failures = []
    for args in bad_inputs(cli.site, tmp_path):
        result = cli(*args, ok=False)
        lines = result.stderr.strip().splitlines()
        if (
            result.exit_code == 0
            or "Traceback" in result.output
            or len(lines) != 1
            or not lines[0].startswith("error: ")
        ):
            failures.append((args, result.exit_code, result.stderr))
    assert failures == []
    assert json.loads(cli("items", "list", "--json").stdout) == []


def test_unknown_names_list_the_known_ones(cli: Any) -> None:
    """A language the emails don't exist in, or a source not configured: the error says what exists."""
    preview = cli("editions", "preview", "1", "--language", "xx", ok=False)
    assert preview.stderr == "error: --language 'xx': the emails exist in de, en, fr\n"
    collect = cli("collect", "--source", "nosuch", ok=False)
    assert collect.stderr.startswith("error: no source named nosuch in ")
    assert collect.stderr.rstrip().endswith("(known: epo-news, wipo-news)"), collect.stderr


def test_usage_errors_point_to_help(cli: Any) -> None:
    """A mistyped option is one line that names the option and the command's --help."""
    result = cli("items", "add", "--titel", "x", ok=False)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "--titel" in line
    assert "newsletter items add --help" in line


def test_group_without_subcommand_shows_help(cli: Any) -> None:
    """`newsletter items` with no subcommand shows the group's help rather than an error line."""
    result = cli("items", ok=False)
    assert "add" in result.output
    assert "approve" in result.output
    assert "Traceback" not in result.output
