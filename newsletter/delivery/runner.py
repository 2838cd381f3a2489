"""The delivery runner: one owner for an edition's send, from start to finish.

``editions send``, ``worker``, the scheduler's ticks (and the daemon's) all send
through a :class:`Runner`. For one edition it takes the send lease (``lease.py``),
renders the edition once (``outgoing.py``), starts it (``approved``, ``paused`` or
``written`` -> ``sending``), drains its outbox through the transport with the delivery
engine (``engine.py``), and finishes it (``sending`` -> ``sent``, or ``written`` when
the transport only writes files) or pauses it (``sending`` -> ``paused`` when the relay
keeps failing). Every status change goes through ``states.move``.

Who may do what while one process holds an edition's lease (its *owner*):

- Only the owner starts, resumes, pauses or switches an edition to a real send, and
  only the owner puts abandoned rows back as it starts. A second ``editions send``
  of the same edition is refused in one line naming the owner; with ``--wait`` it
  waits until the lease is given up or lapses, then resumes what is left, or
  reports that the edition is done.
- On PostgreSQL, ``newsletter worker`` processes may *help* drain an edition that is
  ``sending`` while someone else owns it: they claim rows with ``FOR UPDATE SKIP
  LOCKED`` under row leases of their own (``claims.py``), so no row is claimed twice.
  A helper changes the edition's status only to finish it: whoever finds nothing left
  queued or in anyone's hands marks it ``sent`` (or ``written``), with the edition's
  row locked, so the move happens once. A helper whose relay keeps failing stops
  helping; it does not pause an edition it does not own.
- On SQLite nobody helps (one writer at a time makes helping slower, not faster): a
  worker skips an edition whose lease another process holds.
- A worker works only on editions whose run matches its transport: a worker that
  writes files never touches a real send (it would mark members served who got
  nothing), and a worker with a relay never turns an outbox run into a real one. Only
  an explicit ``editions send`` through a relay does that, and it starts the edition's
  rows afresh.

A killed owner's lease lapses (at once when it ran on this machine, else after
``lease.LEASE_TTL``): the next ``editions send`` or worker takes it over and puts the
dead owner's rows back in the queue (``claims.recover_abandoned``); at most the
messages in flight at the kill can arrive twice.
"""

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlmodel import Session, col, select

from newsletter.core import audit, states
from newsletter.core.counts import delivery_counts
from newsletter.core.errors import LeaseHeld, StateError
from newsletter.core.models import Edition, EditionStatus, utcnow
from newsletter.core.site import Site
from newsletter.delivery import claims, engine, lease, outbox, sendable
from newsletter.delivery.engine import DeliveryReport
from newsletter.delivery.outgoing import Prepared, prepare
from newsletter.delivery.transports.base import Transport
from newsletter.editions.build import get_edition
from newsletter.editions.render import Renderer

# Seconds between looks at the lease while a send waits for another to finish.
WAIT_POLL = 1.0


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...


@dataclass
class SendResult:
    edition_id: int
    status: str
    report: DeliveryReport
    totals: dict[str, int]
    warnings: Sequence[str] = ()
    languages: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    # False: the transport only wrote files (the outbox folder); nobody received anything.
    delivered: bool = True
    transport: str = ""
    # Who held the lease while this send waited for it (``--wait``), if anyone did.
    waited_for: str | None = None


# A dry run's totals: the members a copy would go to, and those whose topics leave it empty.
WOULD_SEND, WOULD_SKIP = "would send", "would skip (no item in their topics)"


def _never() -> bool:
    return False


def _record(session: Session, kind: str, edition: Edition, *, actor: str, **detail: Any) -> None:
    source = actor if actor in {"scheduler", "worker"} else "web" if actor.startswith("user:") else "cli"
    audit.record(
        session, kind, actor=actor, source=source, group_id=edition.group_id, edition_id=edition.id, **detail
    )


def _locked(session: Session, edition_id: int) -> Edition:
    """The edition, its row locked until the transaction ends (PostgreSQL; SQLite locks on write)."""
    edition = session.exec(select(Edition).where(col(Edition.id) == edition_id).with_for_update()).first()
    if edition is None:
        return get_edition(session, edition_id)
    return edition


@dataclass
class _Start:
    """What starting (or resuming) an edition found."""

    due: int = 0
    # The edition was already done (another process finished it while this one waited).
    done: str | None = None


class Runner:
    """Sends editions for one process: one owner id, one transport, one renderer."""

    def __init__(
        self,
        site: Site,
        renderer: Renderer,
        transport: Transport,
        *,
        actor: str,
        batch_size: int = 200,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.site = site
        self.renderer = renderer
        self.transport = transport
        self.actor = actor
        self.batch_size = batch_size
        self.progress = progress
        self.should_stop = should_stop or _never
        self.owner = lease.new_owner()
        self._prepared: dict[int, Prepared] = {}

    @property
    def delivers(self) -> bool:
        return self.transport.capabilities.delivers

    # One edition, start to finish: `editions send`, the scheduler.

    def send(
        self,
        edition_id: int,
        *,
        dry_run: bool = False,
        allow_large: bool = False,
        wait: bool = False,
        on_wait: Callable[[LeaseHeld], None] | None = None,
    ) -> SendResult:
        """Send an approved edition (or resume a sending or paused one) to every active member.

        Raises :class:`LeaseHeld` when another live process is sending it, unless
        ``wait``: then it waits (``on_wait`` is told once) and resumes or reports.
        When ``should_stop`` says yes (the daemon got SIGTERM) the batch in hand is
        finished and the edition stays ``sending``; the next send resumes it.
        """
        try:
            self._check(edition_id, dry_run=dry_run)
            if dry_run:
                prepared = prepare(self.site, self.renderer, edition_id, allow_large=allow_large)
                with self.site.transaction() as session:
                    status = str(get_edition(session, edition_id).status)
                would = {WOULD_SEND: sum(prepared.audience.values()) - prepared.topic_skips}
                if prepared.topic_skips:
                    would[WOULD_SKIP] = prepared.topic_skips
                return SendResult(
                    edition_id, status, DeliveryReport(), would, prepared.warnings, prepared.audience, True
                )
            waited_for = self._take(edition_id, wait=wait, on_wait=on_wait)
            try:
                return self._run(edition_id, allow_large=allow_large, waited_for=waited_for)
            finally:
                with self.site.transaction() as session:
                    lease.give_up(session, edition_id, self.owner)
        finally:
            self.transport.close()

    def reserve(self, edition_id: int) -> None:
        """Check that the edition can be sent and take its lease now, for a :meth:`send` to come.

        The workspace reserves in the request (a second press, or a CLI send, gets
        :class:`LeaseHeld` on the page) and then sends in a background thread.
        """
        self._check(edition_id, dry_run=False)
        with self.site.transaction() as session:
            lease.take(session, edition_id, self.owner)

    def _check(self, edition_id: int, *, dry_run: bool) -> None:
        """Refuse what cannot be sent, before anything is taken or rendered."""
        with self.site.transaction() as session:
            sendable.check(get_edition(session, edition_id), delivers=self.delivers, dry_run=dry_run)

    def _take(
        self, edition_id: int, *, wait: bool, on_wait: Callable[[LeaseHeld], None] | None
    ) -> str | None:
        """Take the edition's lease, waiting for it if asked; who held it while we waited."""
        waited_for = None
        while True:
            try:
                with self.site.transaction() as session:
                    lease.take(session, edition_id, self.owner)
                return waited_for
            except LeaseHeld as held:
                if not wait or self.should_stop():
                    raise
                if waited_for is None and on_wait is not None:
                    on_wait(held)
                waited_for = lease.describe(held.owner)
            # Look at the lease (a read) until it is free or lapsed, then try to take it.
            while not self.should_stop():
                time.sleep(WAIT_POLL)
                with self.site.transaction() as session:
                    current = lease.holder(session, edition_id)
                if current is None or current.lapsed():
                    break

    # One pass over an edition being sent: `newsletter worker`.

    def work_on(self, edition_id: int) -> tuple[DeliveryReport, str | None]:
        """Deliver what is due of a ``sending`` edition: as its owner if the lease is free, else as a helper.

        Returns what was done, and a note when the edition was left alone (another process
        owns it on SQLite, or its run does not match this transport).
        """
        with self.site.transaction() as session:
            edition = get_edition(session, edition_id)
        if edition.status != EditionStatus.SENDING:
            return DeliveryReport(), None
        if edition.outbox_only == self.delivers:
            run = "written to the outbox folder" if edition.outbox_only else "delivered for real"
            return (
                DeliveryReport(),
                f"edition #{edition_id} is being {run}: left alone (via {self.transport.name})",
            )
        try:
            with self.site.transaction() as session:
                lease.take(session, edition_id, self.owner)
            owns = True
        except LeaseHeld as held:
            if self.site.engine.dialect.name != "postgresql":
                return DeliveryReport(), f"edition #{edition_id} is left to {lease.describe(held.owner)}"
            owns = False
        try:
            with self._transaction(edition_id, owns_lease=owns) as session:
                if owns:
                    claims.recover_abandoned(session, edition_id)
                due = claims.due(session, edition_id)
            report = DeliveryReport()
            if due:
                prepared = self._prepare(edition_id, allow_large=True)
                report = self._drain(edition_id, prepared, due, owns_lease=owns)
            # Also when nothing was due: an owner that died just before finishing leaves
            # an edition with nothing left, which the next pass marks done.
            self._settle(edition_id, report, owns_lease=owns, note=bool(due))
            return report, None
        finally:
            if owns:
                with self.site.transaction() as session:
                    lease.give_up(session, edition_id, self.owner)

    def _run(self, edition_id: int, *, allow_large: bool, waited_for: str | None) -> SendResult:
        prepared = self._prepare(edition_id, allow_large=allow_large)
        start = self._start(edition_id)
        if start.done is not None:
            with self.site.transaction() as session:
                totals = delivery_counts(session, edition_id)
            report = DeliveryReport()
            return self._result(prepared, start.done, report, totals, waited_for)
        report = self._drain(edition_id, prepared, start.due, owns_lease=True)
        status, totals = self._settle(edition_id, report, owns_lease=True, note=True)
        return self._result(prepared, status, report, totals, waited_for)

    def _result(
        self,
        prepared: Prepared,
        status: str,
        report: DeliveryReport,
        totals: dict[str, int],
        waited: str | None,
    ) -> SendResult:
        return SendResult(
            prepared.edition_id,
            status,
            report,
            totals,
            prepared.warnings,
            prepared.audience,
            delivered=self.delivers,
            transport=self.transport.name,
            waited_for=waited,
        )

    @contextlib.contextmanager
    def _transaction(self, edition_id: int, *, owns_lease: bool) -> Iterator[Session]:
        """A transaction that, for the owner, first renews the lease (:class:`LeaseLost` if gone).

        Writing first also matters on SQLite: the transaction then holds the write lock
        from its start, so what it reads cannot go stale before it writes.
        """
        with self.site.transaction() as session:
            if owns_lease:
                lease.renew(session, edition_id, self.owner)
            yield session

    def _prepare(self, edition_id: int, *, allow_large: bool) -> Prepared:
        prepared = self._prepared.get(edition_id)
        if prepared is None:
            prepared = prepare(self.site, self.renderer, edition_id, allow_large=allow_large)
            self._prepared[edition_id] = prepared
        return prepared

    def _start(self, edition_id: int) -> _Start:
        """Under the lease: queue the members (or take up the run), and move the edition to ``sending``."""
        with self._transaction(edition_id, owns_lease=True) as session:
            edition = _locked(session, edition_id)
            status = EditionStatus(edition.status)
            if status in {EditionStatus.SENT, EditionStatus.CANCELLED} or (
                status == EditionStatus.WRITTEN and not self.delivers
            ):
                return _Start(done=str(status))
            sendable.check_run(session, edition, delivers=self.delivers, owner=self.owner)
            recovered = claims.recover_abandoned(session, edition_id)
            detail: dict[str, Any] = {"transport": self.transport.name, "owner": self.owner}
            if status == EditionStatus.APPROVED or (self.delivers and edition.outbox_only):
                if edition.outbox_only:
                    # Written to the outbox before: nobody got it, so the real send starts afresh.
                    detail["restarted"] = outbox.restart(session, edition_id)
                edition.outbox_only = not self.delivers
                kind, detail["queued"] = "edition-send", outbox.enqueue(session, edition)
            else:
                kind, detail["recovered"] = "edition-resume", recovered
            states.move(edition, EditionStatus.SENDING)
            session.add(edition)
            _record(session, kind, edition, actor=self.actor, **detail)
            session.flush()
            due = delivery_counts(session, edition_id).get("queued", 0)
        return _Start(due=due)

    def _drain(self, edition_id: int, prepared: Prepared, due: int, *, owns_lease: bool) -> DeliveryReport:
        """Deliver the edition's due rows through the transport until none is left (or we stop)."""
        self.transport.begin(edition_id, prepared.previews(self.site.settings))
        if self.progress is not None:
            self.progress.start(due)
        return engine.run(
            self.site,
            claims.EditionQueue(self.site, edition_id, self.owner, owns_lease, self.should_stop),
            lambda _edition_id: prepared.job,
            engine.lanes_for(self.transport, due),
            batch_size=self.batch_size,
            progress=self.progress.advance if self.progress else None,
        )

    def _settle(
        self, edition_id: int, report: DeliveryReport, *, owns_lease: bool, note: bool
    ) -> tuple[str, dict[str, int]]:
        """Pause the edition (the owner, when the relay kept failing) or finish it if nothing is left.

        The audit log gets the outcome when the status changed, or when ``note`` and this
        process owns the send.
        """
        with self._transaction(edition_id, owns_lease=owns_lease) as session:
            edition = _locked(session, edition_id)
            totals = delivery_counts(session, edition_id)
            moved = False
            if edition.status == EditionStatus.SENDING:
                if report.paused and owns_lease:
                    moved = states.move(edition, EditionStatus.PAUSED)
                elif not totals.get("queued") and not totals.get("sending"):
                    final = EditionStatus.WRITTEN if edition.outbox_only else EditionStatus.SENT
                    moved = states.move(edition, final)
                    if final == EditionStatus.SENT:
                        edition.sent_at = utcnow()
                session.add(edition)
            if moved or (note and owns_lease):
                _record(
                    session,
                    f"edition-{edition.status}",
                    edition,
                    actor=self.actor,
                    sent=report.sent,
                    failed=report.failed,
                    skipped=report.skipped,
                    # False for a note on a status another process set: not news again.
                    moved=moved,
                )
            return str(edition.status), totals


def pause(site: Site, edition_id: int, *, actor: str) -> Edition:
    """Pause an edition being sent: no sender claims another message (``claims.claim`` asks).

    Whoever is sending it (this process, the CLI, a worker) finishes the messages in
    hand and stops; the edition stays ``paused`` until a send resumes it.
    """
    with site.transaction() as session:
        edition = _locked(session, edition_id)
        if edition.status != EditionStatus.SENDING:
            raise StateError(
                f"edition #{edition_id} is {edition.status}; only an edition being sent can be paused"
            )
        states.move(edition, EditionStatus.PAUSED)
        session.add(edition)
        _record(session, "edition-pause", edition, actor=actor)
        return edition


def send_edition(
    site: Site,
    renderer: Renderer,
    transport: Transport,
    edition_id: int,
    *,
    actor: str,
    dry_run: bool = False,
    allow_large: bool = False,
    wait: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SendResult:
    """Send one edition through a runner of its own (see :meth:`Runner.send`)."""
    runner = Runner(site, renderer, transport, actor=actor, progress=progress, should_stop=should_stop)
    return runner.send(edition_id, dry_run=dry_run, allow_large=allow_large, wait=wait)
