"""Rate limits that stay small and hold across processes (web/ratelimit.py).

The counters are driven by a clock the test moves (an hour's window), never by sleeping;
sizes are counted, not timed. The shared stores are tried as two processes would use
them (two engines, two clients), and two real `newsletter serve` processes share one
client's limit.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, Engine
from starlette.testclient import TestClient

from newsletter.core.db import make_engine
from newsletter.core.errors import DatabaseError
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.web import create_app
from newsletter.web.ratelimit import WINDOW, Counter, DatabaseCounter, MemoryCounter, RedisCounter
from tests.conftest import migrated, wait_until
from tests.smtp_server import free_port
from tests.test_web import csrf_of
from tests.web_server import serving

REDIS_URL = "redis://127.0.0.1:6379/15"


class Clock:
    def __init__(self, now: float = 1_000 * WINDOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hits(counter: Counter, key: str, times: int, limit: int = 10) -> list[bool]:
    return [counter.hit("sign-up:client", key, limit) for _ in range(times)]


def test_memory_stays_bounded_after_a_million_distinct_clients() -> None:
    """A million clients over ten hours: never more counters than two windows' clients."""
    clock = Clock()
    counter = MemoryCounter(clock=clock)
    per_hour = 100_000
    largest = 0
    for hour in range(10):
        clock.now = (1_000 + hour) * WINDOW
        for n in range(per_hour):
            counter.hit("sign-up:client", f"198.51.{hour}.{n}", 10)
        largest = max(largest, len(counter))
    assert largest == 2 * per_hour
    # A quiet spell, then one client: everything older is gone.
    clock.now = (1_000 + 12) * WINDOW
    counter.hit("sign-up:client", "192.0.2.1", 10)
    assert len(counter) == 1


@pytest.fixture
def engines(db_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one migrated database: two web processes."""
    first, second = make_engine(db_url), make_engine(db_url)
    yield first, second
    first.dispose()
    second.dispose()


def test_the_eleventh_sign_up_in_an_hour_is_refused_even_across_the_window_edge(
    engines: tuple[Engine, Engine],
) -> None:
    """Ten hits just before the hour turns still count just after it (a sliding window,
    not a fixed one), in memory and in the database (whose row rolls forward)."""
    clock = Clock()
    for make in (lambda: MemoryCounter(clock=clock), lambda: DatabaseCounter(engines[0], clock=clock)):
        clock.now = 1_000 * WINDOW
        counter = make()
        assert hits(counter, "192.0.2.7", 11) == [True] * 10 + [False]
        clock.now += WINDOW - 1  # the last second of the window, then the first tenth of the next
        assert hits(counter, "192.0.2.8", 10) == [True] * 10
        clock.now += 1 + WINDOW / 10
        # 10 * 0.9 + 1 = 10: one more is allowed; then 10 * 0.9 + 2 = 11 is over.
        assert hits(counter, "192.0.2.8", 2) == [True, False]
        # A window later the previous window's 2 hits weigh 0.9: 1.8 + 9 hits is within 10.
        clock.now += WINDOW
        assert hits(counter, "192.0.2.8", 9) == [True] * 8 + [False]
        # Another client is its own bucket; another limit name is its own count.
        assert hits(counter, "192.0.2.9", 1) == [True]
        assert counter.hit("sign-in:client", "192.0.2.8", 10)


def test_the_database_counter_is_one_limit_for_two_processes(engines: tuple[Engine, Engine]) -> None:
    clock = Clock()
    one, two = (DatabaseCounter(engine, clock=clock) for engine in engines)
    answers = [(one if n % 2 else two).hit("sign-up:client", "192.0.2.10", 10) for n in range(11)]
    assert answers == [True] * 10 + [False]
    # Two hours on, the first hit of the new window sweeps every older one away.
    for n in range(50):
        one.hit("sign-up:client", f"192.0.2.{100 + n}", 10)
    assert len(one) == 51
    clock.now += 2 * WINDOW
    assert two.hit("sign-up:client", "192.0.2.10", 10)
    assert len(two) == 1


def test_keys_idle_for_two_windows_are_swept_a_bounded_batch_per_hit(engines: tuple[Engine, Engine]) -> None:
    """The sweep after a new window deletes at most a batch per call until none is left,
    never a whole busy hour's keys in one statement; recent keys are kept."""
    clock = Clock()
    counter = DatabaseCounter(engines[0], clock=clock, sweep_batch=10)
    for n in range(25):
        counter.hit("sign-up:address", f"old{n}@example.org", 3)
    clock.now += WINDOW
    for n in range(3):
        counter.hit("sign-up:address", f"recent{n}@example.org", 3)
    # Nothing is older than the previous window yet: every key is kept.
    assert len(counter) == 28
    clock.now += WINDOW
    sizes = []
    for n in range(5):
        counter.hit("sign-up:address", f"new{n}@example.org", 3)
        sizes.append(len(counter))
    # 25 old keys go 10, 10, 5; each call adds its new key; the recent ones stay.
    assert sizes == [28 - 10 + 1, 28 - 20 + 2, 28 - 25 + 3, 7, 8]
    assert counter.hit("sign-up:address", "recent0@example.org", 3)


def test_a_process_whose_clock_is_behind_counts_in_the_newer_window(engines: tuple[Engine, Engine]) -> None:
    """A row another process already rolled into the next window is not rolled back."""
    ahead, behind = Clock(), Clock()
    first, second = DatabaseCounter(engines[0], clock=ahead), DatabaseCounter(engines[1], clock=behind)
    assert hits(first, "192.0.2.30", 4, limit=5) == [True] * 4
    ahead.now += WINDOW  # the first process's clock turns the hour a moment before the second's
    behind.now += WINDOW - 1
    assert first.hit("sign-up:client", "192.0.2.30", 5)  # 4 previous (weight 1.0) + 1
    # The second still counts on the newer row: 4 previous + 2 = 6 is over 5; both agree.
    assert not second.hit("sign-up:client", "192.0.2.30", 5)
    ahead.now = behind.now = ahead.now + WINDOW / 2
    # Half a window on: 4 * 0.5 + 3 = 5 (the behind process's hit counted in this window).
    assert first.hit("sign-up:client", "192.0.2.30", 5)


def two_limits(counter: Counter) -> list[bool]:
    """A sign-up's two limits counted at once: the client (2 an hour) and the address (1)."""
    return counter.hits([("sign-up:client", "192.0.2.20", 2), ("sign-up:address", "ann@example.org", 1)])


def test_two_limits_are_counted_at_once_in_memory_and_in_the_database(
    engines: tuple[Engine, Engine],
) -> None:
    """`hits` counts every limit it is given, allowed or not, as `hit` after `hit` would."""
    clock = Clock()
    one, two = (DatabaseCounter(engine, clock=clock) for engine in engines)
    memory = MemoryCounter(clock=clock)
    for counter in (memory, one):
        assert two_limits(counter) == [True, True]
        assert two_limits(counter) == [True, False]
        assert two_limits(counter) == [False, False]
        # Each key has one counter, and the single-limit form reads the same counts.
        assert len(counter) == 2
        assert counter.hit("sign-up:address", "ann@example.org", 4)  # the 4th hit
        assert not counter.hit("sign-up:address", "ann@example.org", 4)
    # The other process sees the database's counts.
    assert two.hits([("sign-up:client", "192.0.2.20", 4), ("sign-in:client", "192.0.2.20", 1)]) == [
        True,
        True,
    ]
    assert len(two) == 3
    with pytest.raises(ValueError, match="once per call"):
        one.hits([("sign-up:client", "192.0.2.21", 2), ("sign-up:client", "192.0.2.21", 2)])


def prepared(connection: Connection, prefix: str) -> list[tuple[str, int, int, list[str]]]:
    """The statements starting with ``prefix`` psycopg prepared on this connection."""
    rows = connection.exec_driver_sql(
        "SELECT name, generic_plans, custom_plans, parameter_types::text[] FROM pg_prepared_statements "
        "WHERE statement LIKE %(prefix)s",
        {"prefix": prefix + "%"},
    ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


@pytest.mark.postgres
def test_the_counters_statements_never_scan_a_window_from_a_cached_plan(db_url: str) -> None:
    """A plan cached while the previous window was empty once scanned that whole window on
    every hit after the turn of the hour. The upsert, even planned generically, finds its
    rows by primary key alone; the sweep, which reads by window, is planned afresh each time."""
    if not db_url.startswith("postgresql"):
        pytest.skip("plans are PostgreSQL's")
    engine = make_engine(db_url)
    clock = Clock()
    counter = DatabaseCounter(engine, clock=clock, sweep_batch=2)
    try:
        # psycopg prepares a statement on its fifth run on a connection; one connection here.
        for n in range(12):
            counter.hits(
                [("sign-up:client", f"192.0.2.{n}", 10), ("sign-up:address", f"a{n}@example.org", 3)]
            )
        clock.now += 2 * WINDOW  # all 24 keys are old: a dozen sweeps of two
        for n in range(12):
            counter.hits(
                [("sign-up:client", f"198.51.100.{n}", 10), ("sign-up:address", f"b{n}@example.org", 3)]
            )
        with engine.connect() as connection:
            upserts = prepared(connection, "INSERT INTO rate_limit")
            sweeps = prepared(connection, "DELETE FROM rate_limit")
            plans = []
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            for name, _, _, types in upserts:
                values = ", ".join("1" if "int" in kind else "'x'" for kind in types)
                plan = connection.exec_driver_sql(f"EXPLAIN EXECUTE {name}({values})").scalars().all()
                plans.append("\n".join(plan))
    finally:
        engine.dispose()
    assert upserts, "the upsert was never prepared: the test no longer sees what it checks"
    assert sweeps, "the sweep was never prepared: the test no longer sees what it checks"
    for plan in plans:
        assert "Conflict Arbiter Indexes: rate_limit_pkey" in plan
        assert "Scan on rate_limit" not in plan
        assert "Index" not in plan.replace("Arbiter Indexes", "")
    assert all(generic == 0 and custom > 0 for _, generic, custom, _ in sweeps)


def test_a_database_the_counter_cannot_use_is_a_database_error(tmp_path: Path) -> None:
    """A counter whose database is locked or gone raises DatabaseError, which the pages answer with 503."""
    engine = make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")
    try:
        with pytest.raises(DatabaseError, match="the rate limit counters cannot be read: no such table"):
            DatabaseCounter(engine).hit("sign-up:client", "192.0.2.10", 10)
    finally:
        engine.dispose()


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_answers(), reason="no Redis server on 127.0.0.1:6379")
def test_the_redis_counter_is_one_limit_for_two_processes() -> None:
    clock = Clock(now=(time.time() // WINDOW) * WINDOW)
    one, two = RedisCounter(REDIS_URL, clock=clock), RedisCounter(REDIS_URL, clock=clock)
    key = f"redis-test-{uuid.uuid4().hex}"
    answers = [(one if n % 2 else two).hit("sign-up:client", key, 10) for n in range(11)]
    assert answers == [True] * 10 + [False]
    ttl = one.client.ttl(f"newsletter:rl:sign-up:client:{key}:{int(clock.now // WINDOW)}")
    assert 0 < ttl <= 2 * WINDOW + 1
    # Two limits in one pipeline: the client's twelfth hit, and a first for an address.
    assert two.hits([("sign-up:client", key, 10), ("sign-up:address", key, 1)]) == [False, True]
    assert one.hits([("sign-up:address", key, 1)]) == [False]


# -- real processes ------------------------------------------------------------------------------


def sign_up(base: str, address: str) -> int:
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/subscribe/cepiug")
        data = {"csrf": csrf_of(page.text), "email": address, "consent": "yes"}
        return client.post("/subscribe/cepiug", data=data).status_code


def test_two_serve_processes_share_one_clients_limit(site_dir: Path, db_url: str, tmp_path: Path) -> None:
    """Sign-ups from one client, alternating between two servers: ten pass, the eleventh is refused."""
    with (site_dir / "newsletter.toml").open("a") as toml:
        toml.write('\n[web]\nrate_limit_store = "database"\n')
    with (
        serving(site_dir, db_url, tmp_path / "one.log") as one,
        serving(site_dir, db_url, tmp_path / "two.log") as two,
    ):
        answers = [sign_up(one if n % 2 else two, f"visitor{n}@example.org") for n in range(11)]
    assert answers == [200] * 10 + [429]


def test_healthz_answers_while_the_database_does(site_dir: Path, db_url: str, tmp_path: Path) -> None:
    """200 from a real `newsletter serve`; 503 with Retry-After, and no detail, once the database is gone."""
    with serving(site_dir, db_url, tmp_path / "serve.log") as base:
        ok = httpx.get(f"{base}/healthz", timeout=10)
    assert (ok.status_code, ok.text) == (200, "ok\n")
    assert ok.headers["x-content-type-options"] == "nosniff"

    database = tmp_path / "db" / "health.db"
    database.parent.mkdir()
    settings = load_settings(site_dir, env={}, overrides={"database.url": migrated(f"sqlite:///{database}")})
    site = Site.open(settings)
    try:
        client = TestClient(create_app(site))
        assert client.get("/healthz").status_code == 200
        site.engine.dispose()
        database.parent.rename(tmp_path / "gone")
        down = client.get("/healthz")
    finally:
        site.close()
    assert (down.status_code, down.text) == (503, "database unavailable\n")
    assert down.headers["retry-after"] == "5"


def test_serve_with_workers(site_dir: Path, db_url: str, tmp_path: Path) -> None:
    """`serve --workers 2` serves on the database store; it refuses [web] rate_limit_store = "memory"."""
    command = [sys.executable, "-m", "newsletter", "--site", str(site_dir), "--database-url", db_url]
    environment = {**os.environ, "NEWSLETTER_SECRET_KEY": "workers-test-key-0123456789abcdef"}
    port = free_port()
    with (tmp_path / "workers.log").open("wb") as log:
        server = subprocess.Popen(
            [*command, "serve", "--workers", "2", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=log,
        )
        try:

            def healthy() -> bool:
                assert server.poll() is None, (tmp_path / "workers.log").read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_until(healthy)
            assert sign_up(f"http://127.0.0.1:{port}", "workers@example.org") == 200
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0, (tmp_path / "workers.log").read_text()
    assert "2 processes" in (tmp_path / "workers.log").read_text()

    with (site_dir / "newsletter.toml").open("a") as toml:
        toml.write('\n[web]\nrate_limit_store = "memory"\n')
    refused = subprocess.run(
        [*command, "serve", "--workers", "2", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "rate_limit_store" in line
