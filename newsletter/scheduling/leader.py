"""Scheduler leadership: one daemon at a time does the scheduled work.

On PostgreSQL the leader holds a session-level advisory lock; on SQLite, an
exclusive lock on a file beside the database (filelock). A second daemon waits as a
standby and takes over when the first stops. The unique keys on editions and
deliveries remain the last line of defence if anything slips past the lock.

The advisory lock key is derived from the lock's name, the database and the current
schema, so two sites sharing one PostgreSQL server (or one database in two schemas)
each get a leader of their own. Other names give other locks: the scheduler uses
``"send"`` to let one tick send at a time (the delivery runner's per-edition lease is
what keeps an edition from being sent twice).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text

from newsletter.core.db import advisory_key

LEADER = "scheduler"


@contextmanager
def leadership(engine: Engine, *, wait: float = 0.0, name: str = LEADER) -> Iterator[bool]:
    """Yield True while this process holds the lock ``name``, False if another does."""
    if engine.url.get_backend_name() == "postgresql":
        with engine.connect() as connection:
            key = advisory_key(connection, name)
            held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            # Keep the connection idle, not "idle in transaction", while the lock is held.
            connection.commit()
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    connection.commit()
        return
    database = engine.url.database or "newsletter.db"
    # newsletter.scheduling.scheduler.lock, newsletter.send.scheduler.lock: one .gitignore pattern.
    suffix = ".scheduler.lock" if name == LEADER else f".{name}.scheduler.lock"
    lock = FileLock(str(Path(database).with_suffix(suffix)))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
