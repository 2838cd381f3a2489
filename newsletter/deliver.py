"""Draining an outbox through one or more SMTP connections: the delivery engine.

The main thread claims batches of due deliveries (one transaction each) and feeds them
to *lanes*, one thread per connection (``transports.relays``; a plain transport is one
lane). Each lane builds each message by splicing (``splice.py``) and hands it over;
the main thread records the outcomes as they come, all that arrived since the last
commit in one transaction (group commit).

Crash safety: a lane hands over its next message only once the previous message it
sent is recorded as sent. So at any instant each connection has at most one message
the relay may have accepted and the database does not know about: after a kill -9 and
a restart (``editions send`` puts rows left ``sending`` back in the queue) at most one
message per open connection can arrive twice, and nothing is lost. Whatever else stops
the engine (an error, Ctrl-C, SIGTERM, a relay that keeps failing) the outcomes of
messages handed over are recorded before it returns, and the rest go back to the queue.
"""

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from newsletter import outbox, splice
from newsletter.errors import DeliveryError
from newsletter.i18n import reader_language
from newsletter.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.models import DeliveryStatus, Edition
from newsletter.site import Site
from newsletter.transports import Transport

# This many connection failures in a row mean the relay is down: pause, don't burn the list.
PAUSE_AFTER_CONNECTION_FAILURES = 5
# Seconds the recorder waits for more outcomes before committing fewer than one per lane.
GROUP_COMMIT_WAIT = 0.002
# A lane (connection) is opened for every this many due messages, up to the pool's size.
MESSAGES_PER_LANE = 50


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    paused: bool = False
    errors: list[str] = field(default_factory=list)
    # The editions whose relay kept failing (the worker pauses them).
    paused_editions: set[int] = field(default_factory=set)


class Sender(Protocol):
    def send(self, message: OutgoingMessage) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Job:
    """How to build one edition's messages."""

    build: Callable[[Recipient], OutgoingMessage]
    group_language: str


Claim = Callable[[int], list[outbox.Claimed]]


class _Shared:
    """State the lanes and the recording loop share, under one condition variable."""

    def __init__(self, pause_after: int) -> None:
        self.condition = threading.Condition()
        self.results: list[tuple[int, outbox.Outcome]] = []
        self.sequence = 0
        self.committed = 0
        self.stop = False
        self.failure: BaseException | None = None
        self.streak: list[int] = []
        self.pause_after = pause_after
        self.paused = False

    def wait_recorded(self, sequence: int) -> bool:
        """Block until outcome ``sequence`` is committed; False if the engine is stopping."""
        with self.condition:
            while self.committed < sequence and not self.stop:
                self.condition.wait()
            return self.committed >= sequence


def _lane(
    sender: Sender,
    todo: "queue.Queue[outbox.Claimed | None]",
    shared: _Shared,
    jobs: Callable[[int], Job],
) -> None:
    last_sent = 0
    try:
        while not shared.stop:
            row = todo.get()
            if row is None:
                return
            job = jobs(row.edition_id)
            outcome, connection = _attempt(sender, row, job, shared, last_sent)
            if outcome is None:
                # Stopping before handing it over: it goes back to the queue.
                return
            with shared.condition:
                shared.sequence += 1
                if outcome.status == DeliveryStatus.SENT:
                    last_sent = shared.sequence
                if connection:
                    shared.streak.append(row.delivery_id)
                    if len(shared.streak) >= shared.pause_after:
                        shared.paused = shared.stop = True
                elif outcome.status != DeliveryStatus.SKIPPED:
                    shared.streak.clear()
                shared.results.append((row.edition_id, outcome))
                shared.condition.notify_all()
    except BaseException as exc:  # handed to the main thread, which re-raises it
        with shared.condition:
            if shared.failure is None:
                shared.failure = exc
            shared.stop = True
            shared.condition.notify_all()
    finally:
        sender.close()


def _attempt(
    sender: Sender, row: outbox.Claimed, job: Job, shared: _Shared, last_sent: int
) -> tuple[outbox.Outcome | None, bool]:
    """Send one row; its outcome (None: not handed over) and whether the connection failed."""
    if not row.active:
        return outbox.Outcome(row.delivery_id, DeliveryStatus.SKIPPED), False
    language = reader_language(row.language, job.group_language)
    message = job.build(Recipient(row.subscriber_id, row.email, row.name, language, row.delivery_id))
    # The previous message this connection sent must be on record before the next goes.
    if last_sent and not shared.wait_recorded(last_sent):
        return None, False
    try:
        sender.send(message)
    except DeliveryError as exc:
        failed = outbox.Outcome(
            row.delivery_id,
            DeliveryStatus.FAILED,
            error=str(exc)[:500],
            retry=not exc.permanent,
            code=exc.code,
        )
        return failed, exc.connection
    return outbox.Outcome(row.delivery_id, DeliveryStatus.SENT, message.message_id), False


def run(
    site: Site,
    claim: Claim,
    jobs: Callable[[int], Job],
    senders: Sequence[Sender],
    *,
    batch_size: int = 200,
    pause_after: int = PAUSE_AFTER_CONNECTION_FAILURES,
    progress: Callable[[int], None] | None = None,
    bounce_weight: float = 1.0,
) -> DeliveryReport:
    """Deliver what ``claim`` hands out through the senders (one thread each) until none is due."""
    report = DeliveryReport()
    shared = _Shared(pause_after)
    todo: queue.Queue[outbox.Claimed | None] = queue.Queue()
    attempts: dict[int, int] = {}
    editions: dict[int, int] = {}
    threads = [
        threading.Thread(target=_lane, args=(sender, todo, shared, jobs), name=f"lane-{number}", daemon=True)
        for number, sender in enumerate(senders)
    ]
    for thread in threads:
        thread.start()
    exhausted = False
    try:
        while True:
            if not exhausted and not shared.stop and todo.qsize() < batch_size:
                batch = claim(batch_size)
                exhausted = not batch
                for row in batch:
                    attempts[row.delivery_id] = row.attempts + 1
                    editions[row.delivery_id] = row.edition_id
                    todo.put(row)
            with shared.condition:
                if not shared.results and not shared.stop and (attempts or not exhausted):
                    shared.condition.wait(0.05 if not exhausted else 0.5)
                if len(shared.results) < len(senders) and not shared.stop:
                    # Group commit: give the other lanes a moment to add theirs.
                    shared.condition.wait(GROUP_COMMIT_WAIT)
                results, shared.results = shared.results, []
                top = shared.sequence
            if results:
                _record(site, results, attempts, report, progress, bounce_weight)
                with shared.condition:
                    shared.committed = max(shared.committed, top)
                    shared.condition.notify_all()
            if shared.stop or (exhausted and not attempts):
                break
    finally:
        with shared.condition:
            shared.stop = True
            shared.condition.notify_all()
        for _ in threads:
            todo.put(None)
        for thread in threads:
            thread.join()
        with shared.condition:
            results, shared.results = shared.results, []
        # Record what was handed over even when interrupted; the rest goes back to the queue.
        with site.transaction() as session:
            outbox.record(session, [outcome for _, outcome in results], attempts, bounce_weight)
            _count(results, report)
            for _, outcome in results:
                attempts.pop(outcome.delivery_id, None)
            outbox.release(session, list(attempts))
    if shared.failure is not None:
        raise shared.failure
    if shared.paused:
        # The relay is down, which says nothing about these recipients: they are due
        # again at once, without the attempt counting, when `send` resumes the edition.
        with site.transaction() as session:
            outbox.requeue(session, shared.streak)
        report.paused = True
        report.paused_editions = {editions[d] for d in shared.streak if d in editions}
    return report


def _record(
    site: Site,
    results: list[tuple[int, outbox.Outcome]],
    attempts: dict[int, int],
    report: DeliveryReport,
    progress: Callable[[int], None] | None,
    bounce_weight: float,
) -> None:
    """One transaction for every outcome that arrived since the last one."""
    with site.transaction() as session:
        outbox.record(session, [outcome for _, outcome in results], attempts, bounce_weight)
    _count(results, report)
    for _, outcome in results:
        attempts.pop(outcome.delivery_id, None)
    if progress is not None:
        progress(len(results))


def _count(results: list[tuple[int, outbox.Outcome]], report: DeliveryReport) -> None:
    for _, outcome in results:
        if outcome.status == DeliveryStatus.SENT:
            report.sent += 1
        elif outcome.status == DeliveryStatus.SKIPPED:
            report.skipped += 1
        else:
            if outcome.retry:
                report.deferred += 1
            else:
                report.failed += 1
            if len(report.errors) < 20:
                report.errors.append(outcome.error or "")  # the reply names the recipient


def lanes_for(transport: Transport, due: int) -> list[Sender]:
    """The connections to use: one per MESSAGES_PER_LANE due messages, up to the pool's size."""
    open_lanes = getattr(transport, "lanes", None)
    if open_lanes is None:
        return [transport]
    wanted = max(1, min(int(getattr(transport, "size", 1)), -(-due // MESSAGES_PER_LANE)))
    lanes: list[Sender] = open_lanes(wanted)
    return lanes


def drain(
    site: Site,
    edition: Edition,
    factory: MessageFactory,
    transport: Transport,
    *,
    group_language: str,
    batch_size: int = 200,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DeliveryReport:
    """Send every due delivery of the edition; returns what happened in this run.

    ``should_stop`` is asked before each new batch is claimed: when it says yes, the
    batch in hand is finished and recorded, and the rest stays queued for the next run.
    """
    with site.transaction() as session:
        due = outbox.counts(session, edition.id or 0).get("queued", 0)
    job = Job(splice.builder(factory), group_language)

    def claim(limit: int) -> list[outbox.Claimed]:
        if should_stop is not None and should_stop():
            return []
        with site.transaction() as session:
            return outbox.claim(session, edition, limit=limit)

    return run(
        site,
        claim,
        lambda _edition_id: job,
        lanes_for(transport, due),
        batch_size=batch_size,
        progress=progress,
        bounce_weight=site.settings.bounces.hard_weight,
    )
