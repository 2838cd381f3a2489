"""Draining an edition's outbox through a transport.

The loop: claim a batch (one transaction), build and send each message, record the
batch's results (one transaction). Whatever stops it (an error, Ctrl-C, SIGTERM)
the results of messages already handed over are recorded before it exits, so the
next ``send`` resumes with exactly the rest. Only a hard kill (SIGKILL, power loss)
can make a message arrive twice: the batch's rows stay ``sending``, the next ``send``
queues them again, and those the relay had already accepted are sent a second time
(at most one batch; see docs/operations.md).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter import outbox
from newsletter.errors import DeliveryError
from newsletter.i18n import reader_language
from newsletter.message import MessageFactory, Recipient
from newsletter.models import DeliveryStatus, Edition
from newsletter.site import Site
from newsletter.transports import Transport

# This many connection failures in a row mean the relay is down: pause, don't burn the list.
PAUSE_AFTER_CONNECTION_FAILURES = 5


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    paused: bool = False
    errors: list[str] = field(default_factory=list)


def _send_batch(
    batch: list[outbox.Claimed],
    factory: MessageFactory,
    transport: Transport,
    group_language: str,
    report: DeliveryReport,
    outcomes: list[outbox.Outcome],
    streak: list[int],
    progress: Callable[[int], None] | None,
) -> bool:
    """Send one claimed batch, appending outcomes as it goes; False if the relay seems down.

    ``streak`` holds the deliveries that failed on the connection in a row (across
    batches); it is emptied by any answer from the relay about a recipient.
    """
    for row in batch:
        if not row.active:
            outcomes.append(outbox.Outcome(row.delivery_id, DeliveryStatus.SKIPPED))
            report.skipped += 1
        else:
            recipient = Recipient(
                row.subscriber_id,
                row.email,
                row.name,
                reader_language(row.language, group_language),
                row.delivery_id,
            )
            message = factory.build(recipient)
            try:
                transport.send(message)
            except DeliveryError as exc:
                if exc.connection:
                    streak.append(row.delivery_id)
                else:
                    streak.clear()
                if exc.permanent:
                    report.failed += 1
                else:
                    report.deferred += 1
                if len(report.errors) < 20:
                    report.errors.append(f"{row.email}: {exc}")
                outcomes.append(
                    outbox.Outcome(
                        row.delivery_id, DeliveryStatus.FAILED, error=str(exc)[:500], retry=not exc.permanent
                    )
                )
                if len(streak) >= PAUSE_AFTER_CONNECTION_FAILURES:
                    return False
            else:
                streak.clear()
                report.sent += 1
                outcomes.append(outbox.Outcome(row.delivery_id, DeliveryStatus.SENT, message.message_id))
        if progress is not None:
            progress(1)
    return True


def drain(
    site: Site,
    edition: Edition,
    factory: MessageFactory,
    transport: Transport,
    *,
    group_language: str,
    batch_size: int = 200,
    progress: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Send every due delivery of the edition; returns what happened in this run."""
    report = DeliveryReport()
    streak: list[int] = []
    while True:
        with site.transaction() as session:
            batch = outbox.claim(session, edition, limit=batch_size)
        if not batch:
            break
        outcomes: list[outbox.Outcome] = []
        attempts = {row.delivery_id: row.attempts + 1 for row in batch}
        try:
            healthy = _send_batch(
                batch, factory, transport, group_language, report, outcomes, streak, progress
            )
        finally:
            # Record what was handed over even when interrupted; the rest goes back to the queue.
            with site.transaction() as session:
                outbox.record(session, outcomes, attempts)
                outbox.release(session, set(attempts) - {o.delivery_id for o in outcomes})
        if not healthy:
            # The relay is down, which says nothing about these recipients: they are due
            # again at once, without the attempt counting, when `send` resumes the edition.
            with site.transaction() as session:
                outbox.requeue(session, streak)
            report.paused = True
            break
    return report
