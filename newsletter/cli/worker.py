"""``newsletter worker``: deliver the due messages of every edition being sent.

Several workers, on one host or many, share the editions of one PostgreSQL database:
each claims batches with ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``,
so no delivery is claimed twice. On SQLite one process delivers: a second worker
finds the lock file taken and stops with a message saying so.
"""

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
from sqlalchemy.engine import make_url
from sqlmodel import select

from newsletter.cli.context import AppContext
from newsletter.core.errors import StateError
from newsletter.core.i18n import base_language
from newsletter.core.models import Edition, EditionStatus, Group, utcnow
from newsletter.core.settings import Settings
from newsletter.core.site import Site
from newsletter.delivery import engine as deliver
from newsletter.delivery import outbox, splice
from newsletter.delivery.transports import Transport, open_transport
from newsletter.editions import build as library
from newsletter.editions.render import Renderer

pass_app = click.make_pass_decorator(AppContext)


@contextlib.contextmanager
def sqlite_lock(database_url: str) -> Iterator[None]:
    """On SQLite, hold ``<database>.worker.lock`` while delivering; refuse if another process does."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        yield
        return
    path = Path(url.database + ".worker.lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"another worker is already delivering from this SQLite database (it holds {path}); "
                "on SQLite one process delivers: stop the other one, or use PostgreSQL to run several"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Jobs:
    """Each edition's message builder, rendered once when one of its deliveries is first claimed."""

    def __init__(self, site: Site, renderer: Renderer) -> None:
        self.site = site
        self.renderer = renderer
        self._jobs: dict[int, deliver.Job] = {}
        self._lock = threading.Lock()

    def prepare(self, edition_id: int) -> None:
        if edition_id in self._jobs:
            return
        settings: Settings = self.site.settings
        with self.site.transaction() as session:
            edition = library.get_edition(session, edition_id)
            group = session.get(Group, edition.group_id)
            assert group is not None
            group_language = base_language(settings.group(group.slug).language)
            content = library.content(session, settings, edition)
        parts = library.render_languages(self.renderer, settings, content, allow_large=True)
        factory = library.message_factory(settings, group, edition_id, parts)
        with self._lock:
            self._jobs[edition_id] = deliver.Job(splice.builder(factory), group_language)

    def __call__(self, edition_id: int) -> deliver.Job:
        with self._lock:
            return self._jobs[edition_id]


def _finish(site: Site, paused: set[int]) -> None:
    """Pause the editions whose relay kept failing; mark sent those with nothing left to send."""
    with site.transaction() as session:
        for edition in session.exec(select(Edition).where(Edition.status == EditionStatus.SENDING)).all():
            if edition.id in paused:
                edition.status = EditionStatus.PAUSED
            else:
                totals = outbox.counts(session, edition.id or 0)
                if totals.get("queued") or totals.get("sending"):
                    continue
                edition.status = EditionStatus.SENT
                edition.sent_at = utcnow()
            session.add(edition)


def work(
    site: Site, renderer: Renderer, transport: Transport, *, until_idle: bool, poll: float, batch_size: int
) -> deliver.DeliveryReport:
    """Deliver until stopped (or, with ``until_idle``, until nothing is due)."""
    total = deliver.DeliveryReport()
    jobs = Jobs(site, renderer)

    def claim(limit: int) -> list[outbox.Claimed]:
        with site.transaction() as session:
            rows = outbox.claim_due(session, limit=limit)
        for edition_id in {row.edition_id for row in rows}:
            jobs.prepare(edition_id)
        return rows

    size = int(getattr(transport, "size", 1))
    while True:
        report = deliver.run(
            site,
            claim,
            jobs,
            deliver.lanes_for(transport, size * deliver.MESSAGES_PER_LANE),
            batch_size=batch_size,
        )
        for name in ("sent", "failed", "skipped", "deferred"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.errors += report.errors[: 20 - len(total.errors)]
        _finish(site, report.paused_editions)
        if report.sent or report.failed or report.skipped or report.deferred:
            continue
        if until_idle:
            return total
        time.sleep(poll)


@click.command()
@click.option("--until-idle", is_flag=True, help="Stop when nothing is due, instead of waiting for more.")
@click.option("--poll", type=float, default=5.0, show_default=True, help="Seconds between looks when idle.")
@click.option("--batch-size", type=int, default=200, show_default=True, help="Deliveries claimed at a time.")
@pass_app
def worker(app: AppContext, /, until_idle: bool, poll: float, batch_size: int) -> None:
    """Deliver the due messages of every edition being sent; run several on PostgreSQL.

    `editions send ID` starts an edition (and delivers it too); workers on this or
    other hosts share its deliveries, and pick up retries when they fall due. On
    SQLite only one process delivers.

    \b
    Example:
      newsletter --transport smtp worker --until-idle
    """
    with sqlite_lock(app.settings.database_url):
        transport = open_transport(app.settings)
        try:
            report = work(
                app.site,
                Renderer(app.settings),
                transport,
                until_idle=until_idle,
                poll=poll,
                batch_size=batch_size,
            )
        finally:
            transport.close()
    click.echo(
        f"worker done: sent {report.sent}, failed {report.failed}, skipped {report.skipped}, "
        f"deferred {report.deferred} (via {transport.name})"
    )
