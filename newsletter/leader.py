"""Scheduler leadership: one daemon at a time does the scheduled work.

On PostgreSQL the leader holds a session-level advisory lock; on SQLite, an
exclusive lock on a file beside the database (filelock). A second daemon waits as a
standby and takes over when the first stops. The unique keys on editions and
deliveries remain the last line of defence if anything slips past the lock.
"""

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text

# A fixed 64-bit key for pg_advisory_lock, derived from the project name.
ADVISORY_KEY = zlib.crc32(b"newsletter-scheduler")


@contextmanager
def leadership(engine: Engine, *, wait: float = 0.0) -> Iterator[bool]:
    """Yield True while this process holds the scheduler lock, False if another does."""
    if engine.url.get_backend_name() == "postgresql":
        with engine.connect() as connection:
            held = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
            )
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
        return
    database = engine.url.database or "newsletter.db"
    lock = FileLock(str(Path(database).with_suffix(".scheduler.lock")))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
