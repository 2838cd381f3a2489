"""The subscriber pages on SQLite while something else writes: quick answers, nothing half-kept.

A page waits for SQLite's write lock at most ``[web] database_wait_seconds``; past that
it answers 503 with Retry-After and keeps nothing of the visitor's. A send in progress
holds the lock only for its short record commits, so a sign-up during a long delivery
goes through.
"""

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from newsletter.core.db import POOL_SIZE
from newsletter.core.models import Delivery, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.web import create_app
from newsletter.web.admission import Admission
from newsletter.web.security import Receive, Scope, Send
from tests.conftest import REPO, Cli, migrated, wait_until
from tests.smtp_server import running_server
from tests.test_delivery_engine import approved_edition, bulk_members, database
from tests.test_web import csrf_of

KEY = "web-load-test-key-0123456789abcdef"


@pytest.fixture
def sqlite_site(site_dir: Path, tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    """The example site on a SQLite file, its pages waiting at most half a second for the lock."""
    with (site_dir / "newsletter.toml").open("a") as toml:
        toml.write("\n[web]\ndatabase_wait_seconds = 0.5\n")
    path = tmp_path / "load.db"
    settings = load_settings(
        site_dir,
        env={"NEWSLETTER_SECRET_KEY": KEY},
        overrides={"database.url": migrated(f"sqlite:///{path}")},
    )
    site = Site.open(settings)
    yield site, path
    site.close()


def sign_up(client: TestClient, address: str) -> tuple[int, str, str | None]:
    form = client.get("/subscribe/cepiug")
    assert form.status_code == 200
    data = {"csrf": csrf_of(form.text), "email": address, "consent": "yes"}
    answer = client.post("/subscribe/cepiug", data=data)
    return answer.status_code, answer.text, answer.headers.get("retry-after")


def stored(site: Site, address: str) -> bool:
    with site.transaction() as session:
        return (
            session.exec(select(Subscriber).where(col(Subscriber.email_key) == address)).first() is not None
        )


def test_a_locked_database_answers_503_with_retry_after_and_keeps_nothing(
    sqlite_site: tuple[Site, Path],
) -> None:
    site, path = sqlite_site
    client = TestClient(create_app(site))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        status, text, retry_after = sign_up(client, "busy@example.org")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert (status, retry_after) == (503, "5")
    assert "nothing was changed" in text
    assert "Traceback" not in text
    assert not stored(site, "busy@example.org")
    # Once the lock is free the same visitor gets through, and is kept.
    status, text, _ = sign_up(client, "busy@example.org")
    assert status == 200, text
    assert stored(site, "busy@example.org")


def test_a_sign_up_during_a_long_delivery_succeeds(cli: Cli, tmp_path: Path) -> None:
    """3,000 members being sent to a real SMTP server; a visitor signs up mid-send and is kept at once."""
    if not cli.db_url.startswith("sqlite"):
        pytest.skip("the lock is SQLite's")
    addresses = bulk_members(cli, 2999)
    edition_id = approved_edition(cli)
    settings = load_settings(
        cli.site, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": cli.db_url}
    )
    site = Site.open(settings)
    client = TestClient(create_app(site))
    with running_server() as server:
        server.handler.keep_content = False
        env = {**os.environ, "NEWSLETTER_SMTP_URL": server.url(), "NEWSLETTER_SECRET_KEY": KEY}
        command = [sys.executable, "-m", "newsletter", "--site", str(cli.site), "--database-url", cli.db_url]
        send = subprocess.Popen(
            [*command, "--transport", "smtp", "editions", "send", str(edition_id)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def recorded() -> int:
                with database(cli.db_url) as session:
                    rows = session.exec(
                        select(Delivery.id).where(
                            Delivery.edition_id == edition_id, Delivery.status == "sent"
                        )
                    ).all()
                return len(rows)

            # Mid-send: some records committed, the rest still going.
            assert wait_until(lambda: recorded() >= 300 or send.poll() is not None)
            assert send.poll() is None, "the send ended before the sign-up could happen"
            status, text, _ = sign_up(client, "midsend@example.org")
            assert status == 200, text
            assert stored(site, "midsend@example.org")
            assert send.wait(timeout=300) == 0, send.stderr.read() if send.stderr else ""
        finally:
            if send.poll() is None:
                send.kill()
            site.close()
        assert len({rcpt for m in server.messages for rcpt in m.rcpt_tos} & set(addresses)) == len(addresses)


def test_requests_use_no_more_connections_at_once_than_the_pool_keeps(site_dir: Path, db_url: str) -> None:
    """serve runs at most POOL_SIZE requests' database work at once, and the pool keeps that many.

    With anyio's 40 threads on SQLAlchemy's pool of 5, a burst on PostgreSQL opened and
    closed a connection (a new backend) per request beyond the fifth (docs/performance.md).
    """
    import anyio.to_thread

    settings = load_settings(site_dir, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": db_url})
    site = Site.open(settings)
    try:
        if site.engine.dialect.name == "postgresql":
            assert site.engine.pool.size() == POOL_SIZE  # type: ignore[attr-defined]
        with TestClient(create_app(site)) as client:
            assert client.portal is not None  # set while the client is open
            limiter = client.portal.call(anyio.to_thread.current_default_thread_limiter)
            assert limiter.total_tokens == POOL_SIZE
            assert sign_up(client, "pool@example.org")[0] == 200
    finally:
        site.close()


# -- admission: a busy process turns requests away quickly ----------------------------------


def admission_of(app: object) -> Admission:
    """The Admission layer inside create_app's middleware chain (built by the first request)."""
    while not isinstance(app, Admission):
        app = app.middleware_stack if isinstance(app, Starlette) else app.app  # type: ignore[attr-defined]
    return app


def test_a_request_that_waits_too_long_for_its_turn_is_told_to_come_back() -> None:
    """One turn, held by a slow request: the next waits ``wait`` seconds, then gets the busy answer."""
    asyncio.run(one_turn_held())


async def one_turn_held() -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        started.append(scope["path"])
        if scope["path"] == "/slow":
            await release.wait()
        await PlainTextResponse("done")(scope, receive, send)

    admission = Admission(
        slow_app, limit=1, wait=0.05, busy=PlainTextResponse("busy", 503, headers={"retry-after": "5"})
    )
    transport = httpx.ASGITransport(app=admission)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow = asyncio.create_task(client.get("/slow"))
        await wait_until_async(lambda: started == ["/slow"])
        turned = await client.get("/next")
        assert (turned.status_code, turned.text, turned.headers["retry-after"]) == (503, "busy", "5")
        assert started == ["/slow"]  # the turned-away request's work never started
        release.set()
        assert (await slow).text == "done"
        # The turn is free again: the next request is served.
        assert (await client.get("/next")).text == "done"
    assert admission.turned_away == 1
    assert started == ["/slow", "/next"]


async def wait_until_async(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds (no wall-clock wait)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_a_busy_process_answers_503_and_keeps_nothing_of_the_visitor(sqlite_site: tuple[Site, Path]) -> None:
    """With no turn free, a sign-up is the translated busy page with Retry-After, and nobody is stored."""
    site, _ = sqlite_site
    app = create_app(site)
    client = TestClient(app)
    form = client.get("/subscribe/cepiug")
    admission = admission_of(app)
    assert admission.limit == 2 * POOL_SIZE
    admission._turns = asyncio.Semaphore(0)  # every turn taken, as by slow requests
    admission.wait = 0.05
    data = {"csrf": csrf_of(form.text), "email": "queued@example.org", "consent": "yes"}
    answer = client.post("/subscribe/cepiug", data=data)
    assert (answer.status_code, answer.headers.get("retry-after")) == (503, "5")
    assert "nothing was changed" in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"  # still behind the security headers
    assert not stored(site, "queued@example.org")
