"""The site folder and its database: init, check, status, SQLite pragmas, UTC timestamps.

Migrations have tests of their own (test_migrations.py).
"""

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, select

from newsletter.cli import main
from newsletter.core.db import make_engine, migrate
from newsletter.core.models import Event, Group, Item, ItemTarget
from newsletter.core.settings import load_settings


def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process with exactly these arguments."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


def one_line(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The test database, migrated to the newest revision."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


# --- init --------------------------------------------------------------------------------


def test_init_makes_a_working_site(tmp_path: Path, db_url: str) -> None:
    """A new site passes `check`, imports its subscriber file and takes items."""
    site = tmp_path / "news"
    out = run("init", str(site), "--name", "CEPIUG News").stdout
    assert f"created site 'CEPIUG News' in {site}" in out
    # init creates the new site's own database (a SQLite file in the folder) at the newest revision.
    assert f"database sqlite:///{site.resolve()}/newsletter.db: created the schema at revision" in out
    assert json.loads(run("--site", str(site), "status", "--json").stdout)["groups"][0]["slug"] == "main"
    for part in ("newsletter.toml", ".gitignore", "templates", "schedules", "subscribers/main.csv"):
        assert (site / part).exists(), part
    assert 'name = "CEPIUG News"' in (site / "newsletter.toml").read_text()

    templates = len(list((site / "templates").rglob("*.j2")))
    assert templates >= 2
    assert run("--site", str(site), "check").stdout.strip() == (
        f"site OK: 1 groups, 1 schedules, {templates} templates"
    )

    def cli(*args: str) -> Result:
        return run("--site", str(site), "--database-url", db_url, *args)

    csv = site / "subscribers" / "main.csv"
    assert cli("subscribers", "import", "main", str(csv)).stdout.startswith("added 0,")
    with csv.open("a", encoding="utf-8") as handle:
        handle.write("ada@example.org,Ada Lovelace,en\n")
    assert cli("subscribers", "import", "main", str(csv)).stdout.startswith("added 1,")
    members = json.loads(cli("subscribers", "list", "main", "--json").stdout)
    assert [m["email"] for m in members] == ["ada@example.org"]

    added = json.loads(
        cli("items", "add", "--title", "First news", "--url", "https://e.org/1", "--json").stdout
    )
    assert added[0]["groups"] == ["*"]
    assert [i["title"] for i in json.loads(cli("items", "list", "--group", "main", "--json").stdout)] == [
        "First news"
    ]
    status = json.loads(cli("status", "--json").stdout)
    assert [g["slug"] for g in status["groups"]] == ["main"]


@pytest.mark.parametrize(
    "name",
    [
        'The "Patent" Post',
        "Patentinformation Österreich",
        "News, Weekly",
        "R&D \\ Patents",
        "IP <Info> @ Work",
    ],
)
def test_init_takes_any_name(tmp_path: Path, name: str) -> None:
    """Quotes, accents, commas, backslashes or brackets in the name still give a site that passes check."""
    site = tmp_path / "named"
    run("init", str(site), "--name", name)
    assert run("--site", str(site), "check").stdout.startswith("site OK")
    settings = load_settings(site, env={})
    assert settings.site.name == name
    assert settings.group("main").name == name
    assert settings.site.sender.endswith("<news@example.org>")


def test_init_refuses_an_existing_site(tmp_path: Path) -> None:
    """`init` on a folder that already holds a site is one line and leaves the site untouched."""
    site = tmp_path / "news"
    run("init", str(site), "--name", "First")
    before = (site / "newsletter.toml").read_text()
    line = one_line(run("init", str(site), "--name", "Second", ok=False))
    assert "already" in line
    assert (site / "newsletter.toml").read_text() == before


def test_init_keeps_existing_files(tmp_path: Path) -> None:
    """`init` in a folder with a template of its own adds the rest and keeps that template."""
    site = tmp_path / "news"
    (site / "templates").mkdir(parents=True)
    own = site / "templates" / "digest.txt.j2"
    own.write_text("{{ edition.subject }}\n")
    run("init", str(site))
    assert own.read_text() == "{{ edition.subject }}\n"
    assert (site / "templates" / "digest.mjml.j2").is_file()


# --- check -------------------------------------------------------------------------------


def test_check_example_site(site_dir: Path) -> None:
    """The example site passes `check`, which counts what it looked at."""
    result = run("--site", str(site_dir), "check")
    groups = len(list(site_dir.joinpath("newsletter.toml").read_text().split("\n[groups.")[1:]))
    schedules = len(list((site_dir / "schedules").glob("*.toml")))
    templates = len(list((site_dir / "templates").rglob("*.j2")))
    assert (groups, schedules) == (4, 3)
    assert result.stdout.strip() == f"site OK: {groups} groups, {schedules} schedules, {templates} templates"
    assert result.stderr == ""
    report = json.loads(run("--site", str(site_dir), "check", "--json").stdout)
    assert report == {
        "ok": True,
        "checked": {"groups": groups, "schedules": schedules, "templates": templates},
        "problems": [],
        "warnings": [],
    }


def test_check_from_environment(site_dir: Path, tmp_path: Path) -> None:
    """NEWSLETTER_SITE picks the site when --site is not given."""
    result = run("check", env={"NEWSLETTER_SITE": str(site_dir)})
    assert result.stdout.startswith("site OK")


Breakage = Callable[[Path], tuple[str, int, str]]


def replace_line(path: Path, contains: str, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` on the first line containing ``contains``; return that line number."""
    lines = path.read_text(encoding="utf-8").split("\n")
    number = next(i for i, line in enumerate(lines) if contains in line)
    assert old in lines[number]
    lines[number] = lines[number].replace(old, new)
    path.write_text("\n".join(lines), encoding="utf-8")
    return number + 1


def bad_cron(site: Path) -> tuple[str, int, str]:
    line = replace_line(site / "schedules/weekly.toml", "cron =", 'cron = "0 9 * * mon"', 'cron = "0 9 * *"')
    return "schedules/weekly.toml", line, "five fields"


def impossible_cron(site: Path) -> tuple[str, int, str]:
    line = replace_line(
        site / "schedules/weekly.toml", "cron =", 'cron = "0 9 * * mon"', 'cron = "0 25 * * mon"'
    )
    return "schedules/weekly.toml", line, "not a valid cron"


def numeric_weekday(site: Path) -> tuple[str, int, str]:
    path = site / "schedules/fortnightly-fr.toml"
    line = replace_line(path, "cron =", "cron = ", 'cron = "0 9 * * 1"  # was: ')
    return "schedules/fortnightly-fr.toml", line, "weekday"


def unknown_schedule_group(site: Path) -> tuple[str, int, str]:
    path = site / "schedules/monthly-dach.toml"
    line = replace_line(path, "groups =", '"dach"', '"dach", "swiss"')
    return "schedules/monthly-dach.toml", line, "'swiss'"


def jinja_syntax_error(site: Path) -> tuple[str, int, str]:
    path = site / "templates/digest.txt.j2"
    line = replace_line(
        path, "{{ site.postal_address }}", "{{ site.postal_address }}", "{{ site.postal_address | }}"
    )
    return "templates/digest.txt.j2", line, "syntax"


def unknown_mjml_tag(site: Path) -> tuple[str, int, str]:
    path = site / "templates/digest.mjml.j2"
    line = replace_line(path, "{{ t.greeting }}", "<mj-text>", "<mj-txt>")
    return "templates/digest.mjml.j2", line, "<mj-txt>"


def missing_schedule_template(site: Path) -> tuple[str, int, str]:
    path = site / "schedules/monthly-dach.toml"
    line = replace_line(path, "template =", "template = ", 'template = "monatlich"  # was: ')
    return "schedules/monthly-dach.toml", line, "monatlich.mjml.j2"


def broken_subject(site: Path) -> tuple[str, int, str]:
    path = site / "schedules/fortnightly-fr.toml"
    line = replace_line(path, "subject =", "subject = ", 'subject = "{{ group.name }"  # was: ')
    return "schedules/fortnightly-fr.toml", line, "syntax"


def missing_group_template(site: Path) -> tuple[str, int, str]:
    path = site / "newsletter.toml"
    text = path.read_text()
    start = text[: text.index("[groups.fr]")].count("\n")
    lines = text.split("\n")
    number = next(i for i in range(start, len(lines)) if lines[i].startswith("template ="))
    lines[number] = 'template = "bulletin"'
    path.write_text("\n".join(lines))
    return "newsletter.toml", number + 1, "bulletin.mjml.j2"


def misspelt_variable(site: Path) -> tuple[str, int, str]:
    path = site / "templates/digest.mjml.j2"
    line = replace_line(path, "{{ item.title }}", "{{ item.title }}", "{{ item.titel }}")
    return "templates/digest.mjml.j2", line, "has no attribute 'titel'"


def unknown_filter_in_a_branch(site: Path) -> tuple[str, int, str]:
    path = site / "templates/digest.txt.j2"
    line = replace_line(path, "{{ item.place }}", "{{ item.place }}", "{{ item.place | shout }}")
    return "templates/digest.txt.j2", line, "No filter named 'shout'"


def unknown_subject_variable(site: Path) -> tuple[str, int, str]:
    path = site / "schedules/weekly.toml"
    line = replace_line(path, "subject =", "{{ group.name }}", "{{ group.nom }}")
    return "schedules/weekly.toml", line, "schedule weekly for cepiug, schedule weekly for uk"


BREAKAGES = [
    bad_cron,
    impossible_cron,
    numeric_weekday,
    unknown_schedule_group,
    jinja_syntax_error,
    unknown_mjml_tag,
    missing_group_template,
    missing_schedule_template,
    broken_subject,
    # Found only by rendering a sample edition: parsing the templates passes them.
    misspelt_variable,
    unknown_filter_in_a_branch,
    unknown_subject_variable,
]


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_check_finds_and_locates(site_dir: Path, breakage: Breakage) -> None:
    """Each kind of mistake is found and reported as FILE:LINE, and `check` exits 1."""
    relative, line, fragment = breakage(site_dir)
    result = run("--site", str(site_dir), "check", ok=False)
    assert result.exit_code == 1
    located = [r for r in result.stderr.splitlines() if r.startswith(f"{site_dir / relative}:{line}: ")]
    assert located, result.stderr
    assert any(fragment in r for r in located), located
    assert result.stderr.strip().splitlines()[-1].endswith("problem(s) found")

    report = json.loads(run("--site", str(site_dir), "check", "--json", ok=False).stdout)
    assert report["ok"] is False
    assert any(
        p["file"] == str(site_dir / relative) and p["line"] == line and fragment in p["message"]
        for p in report["problems"]
    ), report["problems"]


def test_check_reports_everything_at_once(site_dir: Path) -> None:
    """With many mistakes in many files, one `check` run lists every one of them."""
    expected = [
        breakage(site_dir)
        for breakage in (
            bad_cron,
            numeric_weekday,
            unknown_schedule_group,
            jinja_syntax_error,
            unknown_mjml_tag,
            missing_group_template,
            missing_schedule_template,
        )
    ]
    result = run("--site", str(site_dir), "check", ok=False)
    assert result.exit_code == 1
    for relative, line, fragment in expected:
        prefix = f"{site_dir / relative}:{line}: "
        assert any(r.startswith(prefix) and fragment in r for r in result.stderr.splitlines()), (
            relative,
            result.stderr,
        )
    problems = json.loads(run("--site", str(site_dir), "check", "--json", ok=False).stdout)["problems"]
    assert len(problems) >= len(expected)
    assert f"{len(problems)} problem(s) found" in result.stderr


def test_check_bad_settings_file(site_dir: Path) -> None:
    """A broken newsletter.toml is reported by `check` with its line, templates are still checked."""
    config = site_dir / "newsletter.toml"
    line = replace_line(config, 'timezone = "Europe/Paris"', "Europe/Paris", "Europe/Pariss")
    jinja = jinja_syntax_error(site_dir)
    result = run("--site", str(site_dir), "check", ok=False)
    assert result.exit_code == 1
    assert f"{config}:{line}: groups.fr.timezone: " in result.stderr
    assert f"{site_dir / jinja[0]}:{jinja[1]}: " in result.stderr


# --- status ------------------------------------------------------------------------------


def test_status_json(cli: Any, tmp_path: Path) -> None:
    """`status --json` counts members per group and state and items per state."""
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nada@example.org,Ada\nalan@example.org,Alan\n", encoding="utf-8")
    cli("subscribers", "import", "uk", str(csv))
    cli("subscribers", "add", "dach", "grace@example.org")
    cli("subscribers", "remove", "uk", "alan@example.org")
    for n in range(3):
        cli("items", "add", "--title", f"Item {n}")
    cli("items", "approve", "1")
    report = json.loads(cli("status", "--json").stdout)
    assert report["site"] == str(cli.site.resolve())
    groups = {g["slug"]: g for g in report["groups"]}
    assert sorted(groups) == ["cepiug", "dach", "fr", "uk"]
    assert groups["uk"]["members"] == {"active": 1, "unsubscribed": 1}
    assert groups["dach"]["members"] == {"active": 1}
    assert groups["fr"]["members"] == {}
    assert groups["dach"]["language"] == "de"
    assert groups["dach"]["timezone"] == "Europe/Berlin"
    assert groups["uk"]["editions"] == {}
    assert report["items"] == {"approved": 1, "proposed": 2}
    table = cli("status").stdout
    assert "items: approved 1, proposed 2" in table


def test_status_of_empty_site(cli: Any) -> None:
    """On a new database every count is empty."""
    report = json.loads(cli("status", "--json").stdout)
    assert report["items"] == {}
    assert all(g["members"] == {} and g["editions"] == {} for g in report["groups"])


@pytest.mark.parametrize(
    "args",
    [["items", "list"], ["status"], ["check"], ["subscribers", "list", "uk"], ["items", "show", "1"]],
)
@pytest.mark.parametrize("exists", [True, False])
def test_folder_without_site_suggests_init(tmp_path: Path, args: list[str], exists: bool) -> None:
    """Pointing --site at a folder without newsletter.toml gives one line that suggests `newsletter init`."""
    folder = tmp_path / "not-a-site"
    if exists:
        folder.mkdir()
        (folder / "README.txt").write_text("hello")
    line = one_line(run("--site", str(folder), *args, ok=False))
    assert "newsletter init" in line
    assert str(folder) in line
    assert not (folder / "newsletter.db").exists()


# --- the database ------------------------------------------------------------------------


def test_sqlite_wal_and_foreign_keys(tmp_path: Path, site_dir: Path) -> None:
    """A SQLite site database is in WAL mode, and the engine enforces foreign keys."""
    path = tmp_path / "wal.db"
    url = f"sqlite:///{path}"
    run("--site", str(site_dir), "--database-url", url, "migrate")
    run("--site", str(site_dir), "--database-url", url, "status")
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        with Session(engine) as session:
            session.add(ItemTarget(item_id=12345, group_id=67890))
            with pytest.raises(IntegrityError):
                session.commit()
    finally:
        engine.dispose()


def test_foreign_keys_cascade_and_set_null(engine: Engine) -> None:
    """Deleting an item removes its targets and keeps its audit rows with the item id cleared."""
    with Session(engine) as session:
        group = Group(slug="g", name="G", language="en", timezone="UTC")
        item = Item(title="Gone soon", fingerprint="f" * 64)
        session.add_all([group, item])
        session.flush()
        assert item.id is not None
        assert group.id is not None
        session.add(ItemTarget(item_id=item.id, group_id=group.id))
        session.add(Event(kind="item-add", item_id=item.id))
        session.commit()
        session.delete(item)
        session.commit()
        assert list(session.exec(select(ItemTarget))) == []
        [event] = session.exec(select(Event))
        assert event.item_id is None


def test_naive_datetime_is_refused(engine: Engine) -> None:
    """A timestamp without a zone never reaches the database."""
    with Session(engine) as session:
        session.add(
            Group(slug="naive", name="N", language="en", timezone="UTC", created_at=datetime(2026, 1, 1))
        )
        with pytest.raises(StatementError) as caught:
            session.commit()
    assert "naive" in str(caught.value)
    with Session(engine) as session:
        assert list(session.exec(select(Group))) == []


@pytest.mark.parametrize(
    "written",
    [
        datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 10, 25, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=-7))),
        datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
    ],
)
def test_timestamps_read_back_as_aware_utc(engine: Engine, written: datetime) -> None:
    """Whatever offset a timestamp is written with, it reads back as the same instant in UTC."""
    with Session(engine) as session:
        session.add(Event(kind="probe", at=written))
        session.commit()
    with Session(engine) as session:
        [event] = session.exec(select(Event))
    assert event.at.utcoffset() == timedelta(0)
    assert event.at.tzinfo is not None
    assert event.at.tzname() == "UTC"
    assert event.at == written


def test_a_misspelt_tag_pair_is_one_problem(site_dir: Path) -> None:
    """<mj-txt>…</mj-txt> on one line is one mistake, reported once."""
    path = site_dir / "templates/digest.mjml.j2"
    line = replace_line(path, "{{ t.greeting }}", "<mj-text>", "<mj-txt>")
    text = path.read_text(encoding="utf-8").split("\n")
    text[line - 1] = text[line - 1].replace("</mj-text>", "</mj-txt>")
    path.write_text("\n".join(text), encoding="utf-8")
    result = run("--site", str(site_dir), "check", ok=False)
    assert result.stderr.splitlines() == [
        f"{path}:{line}: unknown MJML tag <mj-txt>",
        "1 problem(s) found",
    ]
