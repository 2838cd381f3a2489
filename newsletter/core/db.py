"""The database: engine, sessions, SQLite pragmas, and explicit, locked migrations.

SQLite (in WAL mode) is the embedded default; PostgreSQL is used when the URL says
``postgresql+psycopg://``. The schema changes only when asked: ``newsletter migrate``
(and ``newsletter init``) call :func:`migrate`, which applies the alembic revisions
under a lock, so two processes started together never race. Opening a site only
reads the revision (:func:`require_current`) and refuses, in one line, a database
that is behind the code (run ``newsletter migrate``) or ahead of it.
"""

import functools
import os
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session

from newsletter.core.errors import ConflictError, DatabaseError, file_error

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# The newest revision of the shipped migrations (tests/test_migrations.py checks it against
# alembic's own reading). Every command checks the database against it; with it here,
# that check costs one query, not importing alembic and reading every migration script.
SHIPPED_HEADS = ("0019",)

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the web pages, `status`) work while a send writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# PostgreSQL connections a process keeps open once it has used them (SQLAlchemy's
# default is 5). A connection beyond them is opened for the moment and closed after:
# under a burst of sign-ups on a pool of 5, serve opened and closed a connection (a new
# PostgreSQL backend) per request, and that cost drove it into overload at 150 a
# second. ``serve`` runs at most this many requests' database work at once
# (web/app.py), so it never needs more; a command uses one or two.
POOL_SIZE = 16


# A pooled PostgreSQL connection idle this long is pinged before it is handed out.
PING_IDLE_AFTER = 10.0


def make_engine(url: str, *, ping_idle_after: float = PING_IDLE_AFTER) -> Engine:
    """Create an engine for ``url`` with the settings this project relies on."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        engine = create_engine(url, pool_size=POOL_SIZE)
    except (SQLAlchemyError, ImportError) as exc:
        raise DatabaseError(f"cannot use database {_safe(url)}: {exc}") from exc
    _ping_when_idle(engine, ping_idle_after)
    return engine


def _ping_when_idle(engine: Engine, idle_after: float) -> None:
    """Ping a pooled connection before handing it out only if it sat idle ``idle_after`` seconds.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip, and on a web
    process a hand-over of the GIL on each side of it, for every statement a page runs:
    about a quarter of a sign-up's database CPU in the serve process and a sixth of
    PostgreSQL's (docs/performance.md). A connection the server or a firewall dropped
    is nearly always one that sat idle, so only those are pinged (SQLAlchemy's
    documented way: a checkout hook that raises ``DisconnectionError`` makes the pool
    open a new connection instead). One used in the last seconds is handed out as it
    is; if the server restarted meanwhile, its statement fails (a ``DatabaseError``:
    the pages answer 503, nothing was changed) and SQLAlchemy renews the whole pool.
    """

    def fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < idle_after:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError(str(exc)) from exc
            raise

    event.listen(engine, "connect", fresh)
    event.listen(engine, "checkin", fresh)
    event.listen(engine, "checkout", ping_if_idle)


def _safe(url: str | URL) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def alembic_config() -> "Config":
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def _scripts() -> "ScriptDirectory":
    """The revisions this code knows, read once per process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def code_heads() -> tuple[str, ...]:
    """The newest revision(s) of the migrations shipped with this code."""
    return tuple(sorted(_scripts().get_heads()))


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revision(s) the database is at; empty for a database without a schema."""
    from alembic.migration import MigrationContext

    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate` did: the revisions before and after."""

    database: str
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def __str__(self) -> str:
        after = ", ".join(self.after) or "none"
        if not self.changed:
            return f"database {self.database} is up to date (revision {after}); nothing to do"
        if not self.before:
            return f"database {self.database}: created the schema at revision {after}"
        return f"database {self.database}: migrated from revision {', '.join(self.before)} to {after}"


def migrate(engine: Engine, *, config: "Config | None" = None) -> Migration:
    """Bring the schema to the newest revision under the migration lock (a no-op when it is there).

    The whole migration is one transaction: a revision that fails leaves the schema
    as it was. ``config`` names other migrations than the shipped ones (for tests).
    """
    from alembic import command
    from alembic.util import CommandError

    custom = config
    config = config or alembic_config()
    database = _safe(engine.url)
    try:
        with migration_lock(engine) as connection:
            before = current_revisions(connection)
            if any(_unknown(revision) for revision in before):
                raise DatabaseError(_ahead(database, before))
            if before == code_heads() and custom is None:
                # Up to date: nothing to run (alembic would read every script to find that out).
                return Migration(database, before, before)
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")
            after = current_revisions(connection)
            if connection.dialect.name == "sqlite":
                _foreign_key_check(connection)
    except CommandError as exc:
        raise DatabaseError(f"cannot migrate database {database}: {exc}") from exc
    except SQLAlchemyError as exc:
        message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DatabaseError(f"cannot migrate database {database}: {message}; nothing was changed") from exc
    return Migration(database, before, after)


def advisory_key(connection: Connection, name: str) -> int:
    """A key for pg_advisory_lock, unique to this lock name, database and schema.

    Two sites sharing one PostgreSQL server (or one database in two schemas) each get
    locks of their own: the scheduler's leadership (``scheduling/leader.py``), the
    migration lock here.
    """
    database, schema = connection.execute(text("SELECT current_database(), current_schema()")).one()
    return zlib.crc32(f"newsletter-{name}:{database}:{schema}".encode())


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection, in a transaction, that alone may change the schema until the block ends.

    PostgreSQL: ``pg_advisory_xact_lock``, keyed by database and schema, taken inside
    the migration's own transaction. A second process waits there; when it gets the
    lock the first has committed, so it finds the newest revision and does nothing.
    PostgreSQL's DDL is transactional, so a failing revision leaves nothing behind.

    SQLite: a file lock beside the database (``news.db`` -> ``news.migrate.lock``),
    taken before the first connection, rather than BEGIN EXCLUSIVE alone. The race
    starts before any transaction can: the first connection creates the file and
    switches it to WAL. And BEGIN EXCLUSIVE waits only the busy timeout (30 s),
    while a migration that rebuilds a big table can take longer; the file lock waits
    for as long as the other process holds it, and is released when that process
    ends, however it ends. Inside the lock the migration still runs in one
    transaction, so it is applied whole or not at all (see ``_sqlite_for_migrating``).
    """
    if engine.url.get_backend_name() == "postgresql":
        with engine.begin() as connection:
            key = advisory_key(connection, "migrate")
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            yield connection
        return
    database = engine.url.database
    if not database or database == ":memory:":
        # Nothing else can open a database that lives in this process's memory.
        with engine.begin() as connection:
            yield connection
        return
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(exc, "cannot create the database folder", path.parent) from exc
    migrating = _sqlite_for_migrating(engine.url)
    try:
        with _file_lock(lock_file(path)), migrating.begin() as connection:
            yield connection
    finally:
        migrating.dispose()


def lock_file(database: Path) -> Path:
    """The file SQLite migrations lock: ``news.db`` -> ``news.migrate.lock``."""
    return database.with_suffix(".migrate.lock")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``, waiting for as long as another process holds it.

    On POSIX a blocking ``flock``: the kernel queues the waiters and wakes the next
    one as soon as the holder lets go or dies (and ``/proc/locks`` shows who waits).
    Elsewhere filelock, which takes the same lock by polling.
    """
    try:
        import fcntl
    except ImportError:
        with FileLock(str(path)):
            yield
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(descriptor)


def _sqlite_for_migrating(url: URL) -> Engine:
    """An engine on the SQLite file whose transactions include the DDL.

    pysqlite opens a transaction only before INSERT, UPDATE or DELETE, so each CREATE
    or ALTER of a migration would commit on its own and a failure half-way would leave
    half a schema. Here the driver's own transaction handling is off and the engine
    sends BEGIN IMMEDIATE itself (the recipe in SQLAlchemy's pysqlite notes). Foreign
    keys are off while migrating, as SQLite asks for table rebuilds (alembic's batch
    mode), and checked before the commit (``_foreign_key_check``).
    """
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()

    def begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", begin)
    return engine


def _foreign_key_check(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = ", ".join(sorted({str(row[0]) for row in broken}))
        raise DatabaseError(f"the migration would leave rows without their parent in {tables}; rolled back")


def require_current(engine: Engine) -> None:
    """Refuse, in one line, a database whose schema is not the one this code needs."""
    database = _safe(engine.url)
    path = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).exists():
        # Checked first, so that looking does not leave an empty database file behind.
        raise DatabaseError(f"there is no database at {path} yet; run `newsletter migrate` to create it")
    try:
        with engine.connect() as connection:
            if _stored_revisions(connection) == SHIPPED_HEADS:
                return
            current = current_revisions(connection)
    except OperationalError as exc:
        raise DatabaseError(f"cannot open database {database}: {exc.orig or exc}".splitlines()[0]) from exc
    heads = code_heads()
    if current == heads:
        return
    if not current:
        message = f"the database {database} has no schema yet; run `newsletter migrate` to create it"
        raise DatabaseError(message)
    if any(_unknown(revision) for revision in current):
        raise DatabaseError(_ahead(database, current))
    raise DatabaseError(
        f"the database {database} is at revision {', '.join(current)} and this version of newsletter "
        f"needs {', '.join(heads)}; run `newsletter migrate` (back the database up first)"
    )


def _stored_revisions(connection: Connection) -> tuple[str, ...] | None:
    """What alembic_version holds, by one query; None when the table is not there (no schema)."""
    try:
        with connection.begin():  # a fresh connection: rolled back on its own if the table is missing
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return tuple(sorted(rows))
    except SQLAlchemyError:
        return None


def _ahead(database: str, current: tuple[str, ...]) -> str:
    """A database at a revision this code does not know was migrated by a newer version."""
    return (
        f"the database {database} is at revision {', '.join(current)}, which this version of newsletter "
        f"does not know (its newest is {', '.join(code_heads())}): it was migrated by a newer version; "
        "upgrade newsletter, or restore the backup taken before that migration"
    )


def _unknown(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _scripts().get_revision(revision) is None
    except CommandError:
        return True


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session that commits at the end, or rolls everything back on any error.

    Every command runs in one of these, so a failing command leaves no half-done change.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        # A broken connection can fail the rollback too; the error that matters is the first.
        with suppress(SQLAlchemyError):
            session.rollback()
        raise database_error(exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def single_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for one statement that is a whole change by itself, committed as it runs.

    On PostgreSQL in autocommit: the statement is its own transaction, with no BEGIN or
    COMMIT round trip (a busy page's write is then one trip: the pool pings only a
    connection that sat idle). On SQLite an ordinary transaction: it has no round trips
    to save, and switching its isolation level back and forth costs statements of its own.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection
    else:
        with engine.begin() as connection:
            yield connection


def database_error(exc: SQLAlchemyError) -> DatabaseError:
    """The one-line error for a statement or commit that failed; its transaction was rolled back."""
    reason = _first_line(exc)
    if isinstance(exc, IntegrityError):
        return ConflictError(
            f"the change conflicts with a record already in the database ({reason}), most likely "
            "written by another process at the same moment; nothing was changed: run the command again"
        )
    if isinstance(exc, OperationalError):
        return DatabaseError(
            f"the database could not be used ({reason}); nothing was changed: check that it is "
            "reachable and not full or locked, then run the command again"
        )
    return DatabaseError(f"database error ({reason}); nothing was changed")


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's own message (SQLAlchemy's adds the statement and a link), first line only."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
