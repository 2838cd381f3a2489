"""Rate-limit counters that stay small: per key, per window, two windows kept.

Each limit counts hits per key in fixed windows (an hour) and judges a hit by a sliding
estimate over the last window: ``previous * (1 - elapsed / window) + current`` (the
sliding-window counter). A key costs one small entry while it is in the current or
the previous window and nothing after; one hit is a constant amount of work.

Written here rather than taken from ``limits``: its in-memory store keeps every key it
ever saw and a timer thread scans them all about every 10 ms, so at 50 sign-ups a
second a fresh server slowed from 10 ms to 10 s per request within minutes. The
counters below have no thread and forget old windows whole.

Three stores, one behaviour:

- :class:`MemoryCounter`: one process (the default for one ``serve`` process);
- :class:`DatabaseCounter`: the site's database (the ``rate_limit`` table), shared by
  every ``serve`` process on it (the default for ``serve --workers N``);
- :class:`RedisCounter`: a Redis server, when ``[web] rate_limit_store`` is a redis:// URL.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from newsletter.core.db import single_statement
from newsletter.core.errors import ConfigError, DatabaseError

WINDOW = 3600.0


# A limit to count one hit against: (name, key, hits allowed per window).
Check = tuple[str, str, int]


class Counter(Protocol):
    def hit(self, name: str, key: str, limit: int) -> bool:
        """Count a hit of ``key`` under the limit ``name``; False once over ``limit`` per window."""
        ...

    def hits(self, checks: Sequence[Check]) -> list[bool]:
        """Count one hit on each (distinct) limit at once; whether each is still within it.

        Every hit counts, allowed or not. A database or Redis counts them in one round
        trip, where ``hit`` after ``hit`` takes two (a visit's sign-up checks two limits).
        """
        ...


def _estimate(previous: int, current: int, now: float, window: float) -> float:
    elapsed = (now % window) / window
    return previous * (1.0 - elapsed) + current


class MemoryCounter:
    """The counters of one process: the current window's and the previous window's."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._number = -1
        self._current: dict[tuple[str, str], int] = {}
        self._previous: dict[tuple[str, str], int] = {}

    def hit(self, name: str, key: str, limit: int) -> bool:
        return self.hits([(name, key, limit)])[0]

    def hits(self, checks: Sequence[Check]) -> list[bool]:
        now = self.clock()
        number = int(now // self.window)
        counts: list[tuple[int, int]] = []
        with self._lock:
            if number != self._number:
                # A new window: the last one becomes the previous (or nothing, after a
                # quiet spell), and every older key is forgotten at once.
                self._previous = self._current if number == self._number + 1 else {}
                self._current = {}
                self._number = number
            for name, key, _ in checks:
                entry = (name, key)
                count = self._current.get(entry, 0) + 1
                self._current[entry] = count
                counts.append((self._previous.get(entry, 0), count))
        return [
            _estimate(previous, count, now, self.window) <= limit
            for (previous, count), (_, _, limit) in zip(counts, checks, strict=True)
        ]

    def __len__(self) -> int:
        """How many counters are kept (for tests: bounded by the keys of two windows)."""
        return len(self._current) + len(self._previous)


class DatabaseCounter:
    """Counters in the site's database, so that several ``serve`` processes share them.

    A key has one row holding its hits in the current window and in the previous one
    (migration 0019). One statement per call, whatever the number of limits: an upsert
    on the primary key that counts the hit, rolls the row forward when a new window has
    begun, and returns both counts. Keys idle for two windows are deleted in batches of
    at most ``sweep_batch`` rows, one batch (in a transaction of its own) per call after
    a new window begins until none is left: a busy hour's keys are not all deleted in
    one statement that would hold up the visits at the turn of the hour.
    """

    def __init__(
        self,
        engine: Engine,
        window: float = WINDOW,
        clock: Callable[[], float] = time.time,
        *,
        sweep_batch: int = 500,
    ) -> None:
        self.engine = engine
        self.window = window
        self.clock = clock
        self.sweep_batch = sweep_batch
        self._swept = -1
        self._postgresql = engine.dialect.name == "postgresql"
        self._upserts: dict[int, sa.TextClause] = {}
        # Two processes sweeping at once take different rows on PostgreSQL (SKIP LOCKED);
        # SQLite has one writer at a time anyway.
        lock = " FOR UPDATE SKIP LOCKED" if self._postgresql else ""
        self._sweep = sa.text(
            "DELETE FROM rate_limit WHERE (name, key) IN (SELECT name, key FROM rate_limit "
            f"WHERE window_start < :previous LIMIT :batch{lock})"
        )

    def _upsert(self, count: int) -> sa.TextClause:
        """One statement that counts a hit on ``count`` keys and returns each key's two windows.

        The SET expressions all read the row as it was. A row of the window before
        becomes the previous window's count; an older one counts for nothing. A row
        already in a later window (another process whose clock is a little ahead) keeps
        its window and counts the hit there, and :meth:`hits` then counts all its hits.
        """
        statement = self._upserts.get(count)
        if statement is None:
            rows = ", ".join(f"(:name{n}, :key{n}, :window, 1, 0)" for n in range(count))
            statement = self._upserts[count] = sa.text(
                f"INSERT INTO rate_limit (name, key, window_start, hits, previous_hits) VALUES {rows} "
                "ON CONFLICT (name, key) DO UPDATE SET "
                "previous_hits = CASE WHEN rate_limit.window_start >= :window THEN rate_limit.previous_hits "
                "WHEN rate_limit.window_start = :previous THEN rate_limit.hits ELSE 0 END, "
                "hits = CASE WHEN rate_limit.window_start >= :window THEN rate_limit.hits + 1 ELSE 1 END, "
                "window_start = CASE WHEN rate_limit.window_start > :window THEN rate_limit.window_start "
                "ELSE :window END "
                "RETURNING name, key, hits, previous_hits, window_start"
            )
        return statement

    @contextlib.contextmanager
    def _sweeping(self) -> Iterator[Connection]:
        """A transaction for one batch of the sweep."""
        with self.engine.begin() as connection:
            if self._postgresql:
                # For this transaction only, in one round trip: its commit does not wait
                # for the disk (a swept key lost to a crash is swept again), and the
                # sweep, which finds its rows by window, is planned for the table as it
                # is now, never from a generic plan a long-lived connection cached while
                # the table was nearly empty (one such plan once scanned a whole hour's
                # rows on every hit: docs/performance.md).
                connection.exec_driver_sql(
                    "SELECT set_config('synchronous_commit', 'off', true), "
                    "set_config('plan_cache_mode', 'force_custom_plan', true)"
                )
            yield connection

    def hit(self, name: str, key: str, limit: int) -> bool:
        return self.hits([(name, key, limit)])[0]

    def hits(self, checks: Sequence[Check]) -> list[bool]:
        now = self.clock()
        number = int(now // self.window)
        # Always the same order, so that two visits counting the same keys lock their rows
        # in the same order.
        keyed = sorted({(name, key[:200]) for name, key, _ in checks})
        if len(keyed) != len(checks):
            raise ValueError("each limit is counted once per call")
        values: dict[str, object] = {"window": number, "previous": number - 1, "batch": self.sweep_batch}
        for n, (name, key) in enumerate(keyed):
            values |= {f"name{n}": name, f"key{n}": key}
        try:
            if number != self._swept:
                # A transaction of its own: one that held the rows of its batch while
                # waiting for a key another process's batch holds could deadlock.
                with self._sweeping() as connection:
                    swept = connection.execute(self._sweep, values).rowcount
                if swept < self.sweep_batch:
                    self._swept = number
            # Its plan has no choice to get wrong (it finds its rows by primary key only),
            # so a cached generic plan is as good as a fresh one (tests/test_rate_limits.py).
            with single_statement(self.engine) as connection:
                rows = connection.execute(self._upsert(len(keyed)), values).all()
        except sa.exc.SQLAlchemyError as exc:
            # The pages answer DatabaseError with 503 and Retry-After (a locked or absent
            # database), not with an error page of their own.
            message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise DatabaseError(f"the rate limit counters cannot be read: {message}") from exc
        estimates = {
            # A row already in a later window (its previous window is this one): every
            # hit it holds counts, rather than a weighting made for another window.
            (name, key): _estimate(previous, hits, now, self.window) if start <= number else previous + hits
            for name, key, hits, previous, start in rows
        }
        return [estimates[name, key[:200]] <= limit for name, key, limit in checks]

    def __len__(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM rate_limit")).scalar_one())


class RedisCounter:
    """Counters in Redis: one INCR per hit, keys that expire after two windows."""

    def __init__(self, url: str, window: float = WINDOW, clock: Callable[[], float] = time.time) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.window = window
        self.clock = clock

    def hit(self, name: str, key: str, limit: int) -> bool:
        return self.hits([(name, key, limit)])[0]

    def hits(self, checks: Sequence[Check]) -> list[bool]:
        now = self.clock()
        number = int(now // self.window)
        pipeline = self.client.pipeline()
        for name, key, _ in checks:
            current_key, previous_key = (f"newsletter:rl:{name}:{key}:{n}" for n in (number, number - 1))
            pipeline.incr(current_key)
            pipeline.expire(current_key, int(self.window * 2) + 1)
            pipeline.get(previous_key)
        answers = pipeline.execute()
        return [
            _estimate(int(answers[3 * n + 2] or 0), int(answers[3 * n]), now, self.window) <= limit
            for n, (_, _, limit) in enumerate(checks)
        ]


def open_counter(store: str, engine: Engine | None, *, processes: int = 1) -> Counter:
    """The counter ``[web] rate_limit_store`` names; "auto" is memory for one process, else the database."""
    if store == "auto":
        store = "memory" if processes == 1 else "database"
    if store == "memory":
        if processes > 1:
            raise ConfigError(
                f"with {processes} web processes each would keep its own limits; set [web] "
                'rate_limit_store = "database" or a redis:// URL, or leave it "auto"'
            )
        return MemoryCounter()
    if store == "database":
        if engine is None:
            raise ConfigError("the database rate-limit store needs the site's database")
        return DatabaseCounter(engine)
    return RedisCounter(store)
