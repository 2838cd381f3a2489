"""One exception tree: every exception is defined in core/errors.py, and OS and database errors are wrapped.

The package's modules are imported and searched for exception classes; the tree drawn
in errors.py's docstring is read and compared with the real class hierarchy. Then each
place that reads or writes a file or the database is made to fail for real (a file
where a folder should be, a missing folder, a broken statement, a duplicate key) and
must answer with a NewsletterError whose one line says what to do.
"""

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Engine, text

import newsletter
from newsletter.audience.export import Member, export_file
from newsletter.core import errors
from newsletter.core.db import make_engine, migrate, transaction
from newsletter.core.errors import ConflictError, DatabaseError, FileAccessError, NewsletterError
from newsletter.core.models import Group
from newsletter.core.settings import load_settings
from newsletter.delivery.transports.directory import DirectoryTransport
from newsletter.scheduling.schedules import load_schedules
from tests.conftest import Cli


def package_modules() -> list[ModuleType]:
    """Every module of the package, imported (not the migration scripts, not ``__main__``)."""
    modules = [newsletter]
    for info in pkgutil.walk_packages(newsletter.__path__, "newsletter."):
        if info.name.endswith("__main__") or ".migrations" in info.name:
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def test_every_exception_is_defined_in_errors_under_newsletter_error() -> None:
    """No module but errors.py defines an exception, unless it is private and its docstring says why."""
    found = 0
    misplaced = []
    for module in package_modules():
        for name, value in vars(module).items():
            if not (inspect.isclass(value) and issubclass(value, BaseException)):
                continue
            if value.__module__ != module.__name__:
                continue
            found += 1
            if module is errors:
                assert issubclass(value, NewsletterError), name
            elif not (name.startswith("_") and "NewsletterError" in (value.__doc__ or "")):
                misplaced.append(f"{module.__name__}.{name}")
    assert misplaced == [], "define these in newsletter/core/errors.py (or make them private and say why)"
    assert found > 20


TREE_LINE = re.compile(r"^    (?P<indent>[│├└─ ]*)(?P<name>[A-Z]\w+)\s{2,}\S")


def test_the_tree_in_the_docstring_is_the_class_hierarchy() -> None:
    """Each class errors.py defines is drawn once in its docstring, under its real base class."""
    assert errors.__doc__ is not None
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in errors.__doc__.splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) // 4
        stack[depth:] = [match["name"]]
        assert match["name"] not in parents, f"{match['name']} is drawn twice"
        parents[match["name"]] = stack[depth - 1] if depth else None
    defined = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, NewsletterError)
        and value.__module__ == errors.__name__
    }
    assert set(parents) == set(defined)
    for name, value in defined.items():
        base = value.__bases__[0].__name__
        assert parents[name] == (None if value is NewsletterError else base), name


# --- files ------------------------------------------------------------------------------------


def test_an_export_to_a_missing_folder_is_a_file_error_and_leaves_nothing(tmp_path: Path) -> None:
    """Writing an export where no folder is says which path and what to check; no temporary file stays."""
    target = tmp_path / "missing" / "uk.csv"
    with pytest.raises(FileAccessError) as raised:
        export_file(iter([Member("a@example.org", None, None, "active", "cli", "2026-12-01")]), target)
    assert (
        str(raised.value) == f"cannot write {target}: No such file or directory; check that the path exists"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_export_replaces_the_file_whole(tmp_path: Path) -> None:
    """A finished export replaces the old file at once and leaves no temporary file beside it."""
    target = tmp_path / "uk.csv"
    target.write_text("old\n")
    count = export_file(iter([Member("a@example.org", "A", "en", "active", "cli", "2026-12-01")]), target)
    assert count == 1
    assert target.read_text().splitlines() == [
        "email,name,language,status,source,since",
        "a@example.org,A,en,active,cli,2026-12-01",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["uk.csv"]


def test_an_outbox_that_is_a_file_is_a_file_error(tmp_path: Path) -> None:
    """A file where the outbox folder should be stops the send with one line naming the folder."""
    (tmp_path / "outbox").write_text("not a folder\n")
    with pytest.raises(FileAccessError) as raised:
        DirectoryTransport(tmp_path / "outbox").begin(7, {"en": "<p>preview</p>"})
    assert str(raised.value) == (
        f"cannot write to the outbox {tmp_path / 'outbox' / 'edition-7'}: Not a directory; "
        "a file stands where a folder should be"
    )


def test_an_unreadable_schedule_is_a_problem_not_a_crash(site_dir: Path) -> None:
    """A schedule that cannot be read (here a folder named like one) is reported with its path."""
    (site_dir / "schedules" / "broken.toml").mkdir()
    settings = load_settings(site_dir, env={})
    _, problems = load_schedules(site_dir, settings.groups)
    path = site_dir / "schedules" / "broken.toml"
    assert [str(p) for p in problems] == [
        f"{path}: cannot read it (Is a directory); a folder stands where a file should be"
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["subscribers", "export", "uk", "--output", "{tmp}/missing/uk.csv"],
            "cannot write {tmp}/missing/uk.csv",
        ),
        (["init", "{tmp}/blocker/site"], "cannot create the site at {tmp}/blocker/site"),
    ],
    ids=["export", "init"],
)
def test_file_errors_on_the_command_line_are_one_line(
    site_dir: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    """An export into a missing folder or an init under a file: one line that says what to check, exit 1."""
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    cli = Cli(site_dir, f"sqlite:///{tmp_path / 'news.db'}")
    result = cli(*[arg.format(tmp=tmp_path) for arg in args], ok=False)
    assert result.exit_code == 1, result.output
    error = result.stderr.strip()
    assert "\n" not in error
    assert error.startswith("error: " + needle.format(tmp=tmp_path)), error
    assert error.endswith(("check that the path exists", "a file stands where a folder should be")), error


# --- the database -----------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'errors.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_a_failing_statement_is_a_database_error_and_rolls_back(engine: Engine) -> None:
    """A statement the database refuses ends the transaction as DatabaseError; earlier writes are undone."""

    def write_then_fail() -> None:
        with transaction(engine) as session:
            session.add(Group(slug="kept", name="Kept?", language="en", timezone="UTC"))
            session.flush()
            session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(DatabaseError) as raised:
        write_then_fail()
    assert type(raised.value) is DatabaseError
    assert str(raised.value).startswith("the database could not be used (no such table: no_such_table);")
    assert "nothing was changed" in str(raised.value)
    with transaction(engine) as session:
        assert session.get(Group, 1) is None


def test_a_duplicate_key_is_a_conflict_error(engine: Engine) -> None:
    """A unique key that holds (two writers, one group slug) is a ConflictError that says to run again."""
    with transaction(engine) as session:
        session.add(Group(slug="uk", name="UK", language="en", timezone="UTC"))
    with pytest.raises(ConflictError) as raised, transaction(engine) as session:
        session.add(Group(slug="uk", name="UK again", language="en", timezone="UTC"))
    assert "UNIQUE constraint failed: group.slug" in str(raised.value)
    assert str(raised.value).endswith("nothing was changed: run the command again")


def test_a_database_in_a_folder_that_cannot_exist_is_a_file_error(tmp_path: Path) -> None:
    """A SQLite path under a file: migrate says the folder cannot be made, not a raw OSError."""
    (tmp_path / "blocker").write_text("a file\n")
    engine = make_engine(f"sqlite:///{tmp_path / 'blocker' / 'db' / 'news.db'}")
    try:
        with pytest.raises(FileAccessError, match=r"^cannot create the database folder .*blocker/db: "):
            migrate(engine)
    finally:
        engine.dispose()
