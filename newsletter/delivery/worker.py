"""``newsletter worker``: deliver the due messages of every edition being sent, through the runner.

Each round first sends the queued confirmation emails that are due
(``confirmations.py``), then looks at every ``sending`` edition, oldest first, and lets the runner do
one pass over it (``Runner.work_on``): as its owner when its send lease is free, as a
helper on PostgreSQL when another process owns it. Several workers, on one host or
many, share one PostgreSQL database this way. On SQLite one worker delivers: a second
finds ``<database>.worker.lock`` held and stops, saying so.
"""

import contextlib
import fcntl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlmodel import col, select

from newsletter.core.errors import StateError
from newsletter.core.models import Edition, EditionStatus
from newsletter.delivery import confirmations
from newsletter.delivery.confirmations import DrainReport
from newsletter.delivery.engine import DeliveryReport
from newsletter.delivery.runner import Runner


@contextlib.contextmanager
def single_worker(database_url: str) -> Iterator[None]:
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


@dataclass
class WorkReport:
    """What a worker did, and the editions it left alone (and why)."""

    report: DeliveryReport = field(default_factory=DeliveryReport)
    notes: list[str] = field(default_factory=list)
    confirmations: DrainReport = field(default_factory=DrainReport)


def _add(total: DeliveryReport, report: DeliveryReport) -> None:
    total.sent += report.sent
    total.failed += report.failed
    total.skipped += report.skipped
    total.deferred += report.deferred
    total.errors += report.errors[: 20 - len(total.errors)]


def _add_drained(total: DrainReport, drained: DrainReport) -> None:
    total.sent += drained.sent
    total.skipped += drained.skipped
    total.retried += drained.retried
    total.failed += drained.failed
    total.errors += drained.errors[: 20 - len(total.errors)]


def work(runner: Runner, *, until_idle: bool, poll: float) -> WorkReport:
    """Deliver until stopped (or, with ``until_idle``, until nothing is due)."""
    done = WorkReport()
    site = runner.site
    with single_worker(site.settings.database_url):
        try:
            while True:
                drained = confirmations.drain(site, runner.transport)
                _add_drained(done.confirmations, drained)
                busy = drained.busy
                with site.transaction() as session:
                    sending = session.exec(
                        select(Edition.id)
                        .where(col(Edition.status) == EditionStatus.SENDING)
                        .order_by(col(Edition.id))
                    ).all()
                for edition_id in sending:
                    if runner.should_stop():
                        return done
                    report, note = runner.work_on(edition_id or 0)
                    _add(done.report, report)
                    if note is not None and note not in done.notes:
                        done.notes.append(note)
                    busy = busy or bool(report.sent or report.failed or report.skipped or report.deferred)
                if busy:
                    continue
                if until_idle or runner.should_stop():
                    return done
                time.sleep(poll)
        finally:
            runner.transport.close()
