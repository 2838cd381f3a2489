"""Shared fixtures: example sites built in temp dirs, on SQLite and (when configured) PostgreSQL.

Set NEWSLETTER_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)
to run every test that takes ``db_url`` on PostgreSQL as well; each such test gets a
schema of its own, dropped afterwards.

Opening a site never migrates, so the tests migrate explicitly, as an operator runs
``newsletter migrate``: ``db_url`` is a database brought to the newest revision,
``empty_db_url`` one without a schema, and :class:`Cli` migrates the database it is
given (``migrate=False`` leaves it alone).
"""

import json
import os
import shutil
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from newsletter.cli import main
from newsletter.core.db import make_engine, migrate
from newsletter.core.models import Event, Group

if TYPE_CHECKING:  # imported lazily below: tests/workspace.py imports this module
    from playwright.sync_api import Browser

    from tests.smtp_server import SmtpServer
    from tests.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
EXAMPLE_PARTS = ("newsletter.toml", "templates", "subscribers", "schedules", "samples")


def _backends() -> list[object]:
    backends: list[object] = ["sqlite"]
    if POSTGRES_URL:
        backends.append(pytest.param("postgres", marks=pytest.mark.postgres))
    return backends


@pytest.fixture(params=_backends())
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database without a schema: a SQLite file (not made yet), or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    assert POSTGRES_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def migrated(url: str) -> str:
    """The database at ``url`` brought to the newest revision, as `newsletter migrate` does."""
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return url


# The statements the migrations ran on PostgreSQL the first time in this process.
_POSTGRES_SCRIPT: list[tuple[str, Any]] = []


def migrated_postgres(url: str) -> str:
    """A fresh PostgreSQL schema brought to the newest revision.

    The first one per process is migrated for real and every statement the migrations
    send is kept; later schemas get the same statements replayed (without the queries,
    which change nothing): about a tenth of the time, for some 600 tests a run.
    tests/test_migrations.py still migrates for real.
    """
    if _POSTGRES_SCRIPT:
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                for statement, parameters in _POSTGRES_SCRIPT:
                    connection.exec_driver_sql(statement, parameters)
        finally:
            engine.dispose()
        return url
    engine = make_engine(url)
    script: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith(("SELECT", "SHOW")):
            script.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    _POSTGRES_SCRIPT.extend(script)
    return url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file brought to the newest revision by the migrations, for tests to copy.

    Copying it costs a millisecond where migrating costs a quarter of a second, a
    thousand times per run. tests/test_migrations.py still migrates for real.
    """
    path = tmp_path_factory.mktemp("migrated") / "template.db"
    url = migrated(f"sqlite:///{path}")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            # Everything in the main file, so that copying the file alone copies the schema.
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture
def db_url(empty_db_url: str, request: pytest.FixtureRequest) -> str:
    """A fresh database at the newest revision, on SQLite and on PostgreSQL."""
    if empty_db_url.startswith("sqlite:///"):
        template: Path = request.getfixturevalue("migrated_sqlite")
        shutil.copyfile(template, empty_db_url.removeprefix("sqlite:///"))
        return empty_db_url
    return migrated_postgres(empty_db_url)


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A copy of the repository's example site in a temp dir."""
    site = tmp_path / "site"
    site.mkdir()
    for part in EXAMPLE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, site / part)
        elif source.is_file():
            shutil.copy(source, site / part)
    return site


class Cli:
    """Runs `newsletter` in-process against one site and one database.

    Made, it runs `newsletter migrate` on that database first, unless ``migrate`` is False.
    """

    def __init__(self, site: Path, db_url: str, *, migrate: bool = True) -> None:
        self.site = site
        self.db_url = db_url
        self.runner = CliRunner()
        if migrate:
            self("migrate")

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> Result:
        result = self.runner.invoke(
            main,
            ["--site", str(self.site), "--database-url", self.db_url, *args],
            input=input,
            catch_exceptions=False,
        )
        if ok:
            assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
        return result

    # What the database holds, read the way the tests check it.

    def members(self, group: str, *flags: str) -> dict[str, dict[str, Any]]:
        """The group's members by address, as `subscribers list --json` shows them."""
        listed = json.loads(self("subscribers", "list", group, "--json", *flags).stdout)
        return {member["email"]: member for member in listed}

    @contextmanager
    def database(self) -> Iterator[Session]:
        """A session on the site's database, on an engine of its own."""
        engine = create_engine(self.db_url)
        try:
            with Session(engine) as session:
                yield session
        finally:
            engine.dispose()

    def events(self) -> list[Event]:
        """The audit log, oldest first."""
        with self.database() as session:
            return list(session.exec(select(Event).order_by(col(Event.id))))

    def group_id(self, slug: str) -> int:
        with self.database() as session:
            return session.exec(select(Group).where(Group.slug == slug)).one().id or 0


@pytest.fixture
def cli(site_dir: Path, db_url: str) -> Cli:
    """The CLI on a copy of the example site and a migrated database."""
    return Cli(site_dir, db_url, migrate=False)


# Debian's Chromium, driven by Playwright (never Playwright's own browser download).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"needs Debian's Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it)",
)


@contextmanager
def chromium() -> Iterator["Browser"]:
    """Debian's Chromium, launched through Playwright (imported here: only browser tests need it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def certificate() -> ssl.SSLContext:
    """A server-side TLS context with a certificate for 127.0.0.1 from a throwaway CA."""
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> bool:
    """True once ``condition`` holds, False if it still does not after ``timeout`` seconds.

    The tests wait on conditions, never on the clock: the deadline is generous for a
    loaded CI machine and only bounds a test that would otherwise hang.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the workspace (tests/workspace.py) -------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator["SmtpServer"]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 for the test."""
    from tests.smtp_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def make_workspace(cli: Cli, smtp_server: "SmtpServer") -> Iterator[Callable[..., "Workspace"]]:
    """The workspace app on the example site with four users (tests/workspace.py)."""
    from tests.workspace import workspaces

    yield from workspaces(cli, smtp_server)


@pytest.fixture
def ws(make_workspace: Callable[..., "Workspace"]) -> "Workspace":
    return make_workspace()
