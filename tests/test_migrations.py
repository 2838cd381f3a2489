"""Explicit, locked migrations: `newsletter migrate` changes the schema, opening a site only checks it."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, select

from newsletter.cli import main
from newsletter.core.db import (
    MIGRATIONS,
    SHIPPED_HEADS,
    advisory_key,
    alembic_config,
    code_heads,
    lock_file,
    make_engine,
    migrate,
    migration_lock,
)
from newsletter.core.errors import DatabaseError
from newsletter.core.models import Consent, Group
from tests.conftest import REPO, wait_until


def run(site: Path, url: str, *args: str, ok: bool = True) -> Result:
    """The CLI in-process on this site and database."""
    result = CliRunner().invoke(main, ["--site", str(site), "--database-url", url, *args])
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
def engine(empty_db_url: str) -> Iterator[Engine]:
    """An engine on a database without a schema."""
    engine = make_engine(empty_db_url)
    yield engine
    engine.dispose()


def revisions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def assert_schema_is_current(engine: Engine) -> None:
    """At the newest revision, one row in alembic_version, and exactly the models' tables and columns."""
    assert revisions(engine) == list(code_heads())
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
    assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())


def sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


# --- migrate, and opening a site ---------------------------------------------------------


def test_migrate_creates_the_schema(engine: Engine) -> None:
    """`migrate` on an empty database creates every table at the newest revision and says so."""
    migration = migrate(engine)
    assert migration.before == ()
    assert migration.after == code_heads()
    assert "created the schema at revision" in str(migration)
    assert_schema_is_current(engine)


def test_migrating_again_changes_nothing(engine: Engine) -> None:
    """A second `migrate` keeps the data and the single revision row, and says there was nothing to do."""
    migrate(engine)
    with Session(engine) as session:
        session.add(Group(slug="keep", name="Keep", language="en", timezone="UTC"))
        session.commit()
    again = migrate(engine)
    assert not again.changed
    assert "up to date" in str(again)
    assert revisions(engine) == list(code_heads())
    with Session(engine) as session:
        assert [g.slug for g in session.exec(select(Group))] == ["keep"]


def test_opening_an_unmigrated_database_says_to_migrate(site_dir: Path, empty_db_url: str) -> None:
    """Before `migrate`, each command needing the database is one line saying to run it; nothing is made."""
    for args in (["status"], ["items", "list"], ["subscribers", "list", "uk"], ["editions", "list"]):
        line = one_line(run(site_dir, empty_db_url, *args, ok=False))
        assert "run `newsletter migrate`" in line, line
    path = sqlite_file(empty_db_url)
    if path is not None:
        assert not path.exists()
    else:
        assert inspect(make_engine(empty_db_url)).get_table_names() == []
    # Commands that need no database work before it exists.
    assert run(site_dir, empty_db_url, "check").stdout.startswith("site OK")
    assert "Usage:" in run(site_dir, empty_db_url, "items", "--help").stdout

    assert "created the schema at revision" in run(site_dir, empty_db_url, "migrate").stdout
    run(site_dir, empty_db_url, "status")
    engine = make_engine(empty_db_url)
    try:
        assert_schema_is_current(engine)
        with Session(engine) as session:
            assert sorted(g.slug for g in session.exec(select(Group))) == ["cepiug", "dach", "fr", "uk"]
    finally:
        engine.dispose()
    assert "up to date" in run(site_dir, empty_db_url, "migrate").stdout


def test_a_database_behind_the_code_is_refused_then_upgraded_in_place(
    site_dir: Path, empty_db_url: str, engine: Engine
) -> None:
    """A database left at 0001 is refused when opened; `migrate` adds the queue index and keeps its rows."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO "group" (slug, name, language, timezone, created_at) '
                "VALUES ('old', 'Old', 'en', 'UTC', '2026-01-01 00:00:00')"
            )
        )
    line = one_line(run(site_dir, empty_db_url, "status", ok=False))
    assert "is at revision 0001" in line
    assert "run `newsletter migrate`" in line
    assert "ix_delivery_queue" not in {index["name"] for index in inspect(engine).get_indexes("delivery")}

    migration = migrate(engine)
    assert (migration.before, migration.after) == (("0001",), code_heads())
    after = {index["name"] for index in inspect(engine).get_indexes("delivery")}
    assert "ix_delivery_queue" in after
    assert not after & {"ix_delivery_status", "ix_delivery_edition_id"}
    assert_schema_is_current(engine)
    with Session(engine) as session:
        assert "old" in [g.slug for g in session.exec(select(Group))]


def test_a_database_ahead_of_the_code_is_one_clear_line(site_dir: Path, empty_db_url: str) -> None:
    """A database migrated by a newer version is refused in one line, by `migrate` too, and left as it is."""
    engine = make_engine(empty_db_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        for args in (["status"], ["migrate"]):
            line = one_line(run(site_dir, empty_db_url, *args, ok=False))
            assert "is at revision 9999" in line, line
            assert "newer version" in line
        assert revisions(engine) == ["9999"]
    finally:
        engine.dispose()


def test_init_migrates_the_database_the_flags_name(tmp_path: Path, empty_db_url: str) -> None:
    """`newsletter --database-url URL init DIR` creates the new site's schema in that database."""
    site = tmp_path / "news"
    out = CliRunner().invoke(main, ["--database-url", empty_db_url, "init", str(site)]).stdout
    assert "created the schema at revision" in out
    assert not (site / "newsletter.db").exists()
    engine = make_engine(empty_db_url)
    try:
        assert_schema_is_current(engine)
    finally:
        engine.dispose()


def test_init_with_an_unreachable_database_keeps_the_folder(tmp_path: Path) -> None:
    """An unreachable database is one line from `init` that says what is left; the folder is written."""
    site = tmp_path / "news"
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    line = one_line(CliRunner().invoke(main, ["--database-url", url, "init", str(site)]))
    assert "cannot migrate database" in line
    assert "run `newsletter migrate` there" in line
    assert (site / "newsletter.toml").is_file()


def failing_migrations(tmp_path: Path) -> Config:
    """The shipped migrations plus a newer revision that creates a table, then fails."""
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "9001_fails_half_way.py").write_text(
        f'''"""creates a table, then fails"""
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = {code_heads()[0]!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO no_such_table VALUES (1)")


def downgrade() -> None:
    pass
''',
        encoding="utf-8",
    )
    config = Config(str(folder / "alembic.ini"))
    config.set_main_option("script_location", str(folder))
    return config


def test_a_failing_migration_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    """A revision that fails half-way rolls back the whole migration, the revisions before it too."""
    with pytest.raises(DatabaseError) as raised:
        migrate(engine, config=failing_migrations(tmp_path))
    assert "no_such_table" in str(raised.value)
    assert "nothing was changed" in str(raised.value)
    assert inspect(engine).get_table_names() == []
    migrate(engine)
    assert_schema_is_current(engine)


# --- two processes at once ---------------------------------------------------------------


def waiting_for_the_lock(engine: Engine) -> int:
    """How many processes wait for the migration lock of this database right now."""
    if engine.url.get_backend_name() == "postgresql":
        with engine.connect() as connection:
            key = advisory_key(connection, "migrate")
            query = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = 0 AND objid::bigint = :k"
            )
            return int(connection.execute(query, {"k": key}).scalar_one())
    # Linux lists the processes queued for a flock() in /proc/locks, marked "->".
    database = sqlite_file(str(engine.url))
    assert database is not None
    inode = lock_file(database).stat().st_ino
    with open("/proc/locks", encoding="ascii") as locks:
        return sum(1 for line in locks if "->" in line and f":{inode} " in line)


def test_two_migrations_started_together_both_succeed(
    site_dir: Path, empty_db_url: str, engine: Engine
) -> None:
    """Two `newsletter migrate` processes meet at the lock on a new database: both succeed, one migrates."""
    if engine.url.get_backend_name() == "sqlite" and not Path("/proc/locks").exists():
        pytest.skip("needs Linux's /proc/locks to see the processes waiting")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONPATH"] = str(REPO)
    arguments = ["--site", str(site_dir), "--database-url", empty_db_url, "migrate"]
    processes: list[subprocess.Popen[str]] = []
    try:
        # Held here until both processes wait for it, so they start migrating at the same moment.
        with migration_lock(engine):
            for _ in range(2):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "newsletter", *arguments],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    )
                )
            both_wait = wait_until(
                lambda: waiting_for_the_lock(engine) == 2 or any(p.poll() is not None for p in processes)
            )
            assert both_wait
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        outputs = [p.communicate(timeout=120) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [p.returncode for p in processes] == [0, 0], outputs
    said = [out.strip() for out, _ in outputs]
    assert sum("created the schema at revision" in line for line in said) == 1, said
    assert sum("up to date" in line for line in said) == 1, said
    assert all(err == "" for _, err in outputs), outputs
    assert_schema_is_current(engine)


def test_the_consent_on_record_is_kept_as_the_first_consent_row(engine: Engine) -> None:
    """Upgrading from 0003 copies each membership's consent into the append-only consent table."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    with engine.begin() as connection:
        for statement in (
            'INSERT INTO "group" (id, slug, name, language, timezone, created_at) '
            "VALUES (1, 'old', 'Old', 'en', 'UTC', '2026-01-01 00:00:00')",
            "INSERT INTO subscriber (id, email, email_key, created_at, updated_at) VALUES "
            "(1, 'a@example.org', 'a@example.org', '2026-01-01 00:00:00', '2026-01-01 00:00:00'), "
            "(2, 'b@example.org', 'b@example.org', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            "INSERT INTO membership (subscriber_id, group_id, status, source, consent_text, consent_ip, "
            "consent_at, confirmed_at, status_changed_at, bounce_score, created_at) VALUES "
            "(1, 1, 'active', 'web', 'I agree', '192.0.2.1', '2026-01-02 10:00:00', "
            "'2026-01-02 10:05:00', '2026-01-02 10:05:00', 0, '2026-01-02 10:00:00'), "
            "(2, 1, 'active', 'cli', NULL, NULL, NULL, NULL, "
            "'2026-01-03 00:00:00', 0, '2026-01-03 00:00:00')",
        ):
            connection.execute(text(statement))
    migrate(engine)
    assert_schema_is_current(engine)
    with Session(engine) as session:
        [kept] = session.exec(select(Consent)).all()
    assert (kept.subscriber_id, kept.group_id, kept.source, kept.text, kept.ip) == (
        1,
        1,
        "web",
        "I agree",
        "192.0.2.1",
    )
    assert (kept.at.isoformat(), kept.confirmed_at and kept.confirmed_at.isoformat()) == (
        "2026-01-02T10:00:00+00:00",
        "2026-01-02T10:05:00+00:00",
    )


def test_the_shipped_head_constant_is_alembics_head() -> None:
    """Commands check the database against SHIPPED_HEADS without alembic: it must name the real head.

    A new migration needs SHIPPED_HEADS in core/db.py moved to it; until then every command
    would take the slow path (and this test says so).
    """
    assert code_heads() == SHIPPED_HEADS
