"""Sending the queued confirmation emails: the worker, the daemon and ``run-due`` drain the queue.

A sign-up only adds a :class:`~newsletter.core.models.ConfirmationMail` row
(``audience/selfservice.py``): the page never waits for the relay, and answers the same
for every address whether the relay is up or not. :func:`drain` claims the due rows,
sends each through the transport it is given and records what happened:

- ``sent``; ``skipped`` when nothing should go (the person is already a member, or the
  request was confirmed or overtaken by an unsubscribe since);
- a temporary failure (relay down, 4xx) puts the row back with a later ``due_at``
  (1, 5, 15 minutes, then hourly); after :data:`GIVE_UP_AFTER` it is ``failed``;
- a permanent refusal (5xx) or a message that cannot be built is ``failed`` at once,
  with the reason in ``last_error``; the rest of the queue goes on. A 5xx reply for the
  recipient is also a bounce of the pending member, through the bounce policy (a
  ``550 5.1.1`` is a hard one), as a refused edition is.

A claim is a conditional update (``queued`` and due, or ``sending`` with its lease
run out), so several drainers (a worker, the daemon) never send one row twice; a
drainer killed mid-send leaves its rows ``sending`` until the lease ends, and the
next drain sends them (at most that one email twice, as with editions).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select, update

from newsletter.audience import selfservice
from newsletter.core.errors import DeliveryError, NewsletterError, PermanentFailure
from newsletter.core.models import ConfirmationMail, DeliveryStatus, utcnow
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery.confirmation import confirmation_message
from newsletter.delivery.lease import new_owner
from newsletter.delivery.transports.base import Transport
from newsletter.feedback import policy

log = logging.getLogger("newsletter.delivery.confirmations")

# A claimed row is this drainer's until then; a drainer that died gives it back this way.
LEASE = timedelta(minutes=5)
RETRY_AFTER = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
# The link would expire after two days: past that, there is nothing worth sending.
GIVE_UP_AFTER = timedelta(seconds=selfservice.CONFIRM_MAX_AGE)
BATCH = 50


@dataclass
class DrainReport:
    """What one drain did with the queued confirmation emails."""

    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.sent or self.skipped or self.retried or self.failed)

    def __str__(self) -> str:
        return (
            f"confirmations: sent {self.sent}, skipped {self.skipped}, "
            f"retried later {self.retried}, failed {self.failed}"
        )


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(col(ConfirmationMail.status) == DeliveryStatus.QUEUED, col(ConfirmationMail.due_at) <= now),
        sa.and_(col(ConfirmationMail.status) == DeliveryStatus.SENDING, col(ConfirmationMail.due_at) < now),
    )


def claim(site: Site, owner: str, *, now: datetime, limit: int = BATCH) -> list[int]:
    """Claim up to ``limit`` due rows for ``owner``; their ids, oldest first."""
    claimed: list[int] = []
    with site.transaction() as session:
        candidates = session.exec(
            select(ConfirmationMail.id).where(_claimable(now)).order_by(col(ConfirmationMail.id)).limit(limit)
        ).all()
        for row_id in candidates:
            # Another drainer may have taken the row since it was read: the update says.
            result = session.execute(
                update(ConfirmationMail)
                .where(col(ConfirmationMail.id) == row_id, _claimable(now))
                .values(
                    status=DeliveryStatus.SENDING,
                    claimed_by=owner,
                    due_at=now + LEASE,
                    attempts=ConfirmationMail.attempts + 1,
                )
            )
            if getattr(result, "rowcount", 0) == 1 and row_id is not None:
                claimed.append(row_id)
    return claimed


def _finish(site: Site, row_id: int, owner: str, **values: object) -> None:
    with site.transaction() as session:
        session.execute(
            update(ConfirmationMail)
            .where(col(ConfirmationMail.id) == row_id, col(ConfirmationMail.claimed_by) == owner)
            .values(claimed_by=None, **values)
        )


def _refused(
    site: Site,
    row_id: int,
    owner: str,
    subscriber_id: int,
    group_id: int,
    refusal: PermanentFailure,
    now: datetime,
) -> None:
    """A relay's 5xx for the recipient: the row fails, and the pending member has a bounce.

    The refusal goes through the bounce policy (``feedback/policy.py``), as a refusal of
    an edition does: a 5.1.1 is a hard bounce of that pending membership. Both happen in
    one transaction, and only while the row is still this drainer's.
    """
    with site.transaction() as session:
        result = session.execute(
            update(ConfirmationMail)
            .where(col(ConfirmationMail.id) == row_id, col(ConfirmationMail.claimed_by) == owner)
            .values(claimed_by=None, status=DeliveryStatus.FAILED, last_error=str(refusal)[:500])
        )
        if getattr(result, "rowcount", 0) != 1:
            return
        bounce = policy.Bounce(
            subscriber_id,
            permanent=True,
            status=policy.reply_status(refusal.code, str(refusal)),
            via="smtp",
            group_id=group_id,
        )
        policy.apply(session, site.settings.bounces, bounce, actor="delivery", source="smtp", at=now)


def _send_one(
    site: Site, signer: Signer, transport: Transport, row_id: int, owner: str, now: datetime
) -> tuple[str, str | None]:
    """Send one claimed row: the outcome (``sent``, ``skipped``, ``retried``, ``failed``) and its error."""
    settings = site.settings
    with site.transaction() as session:
        mail = session.get(ConfirmationMail, row_id)
        if mail is None:
            return "skipped", None
        wanted = selfservice.confirmation_for(session, settings, mail)
        attempts, queued_at = mail.attempts, mail.queued_at
    if wanted is None:
        _finish(site, row_id, owner, status=DeliveryStatus.SKIPPED)
        return "skipped", None
    subscription, group_slug = wanted
    try:
        message = confirmation_message(settings, signer, subscription, group_slug)
        transport.send(message)
    except DeliveryError as exc:
        error = str(exc)[:500]
        if isinstance(exc, PermanentFailure) and exc.code is not None:
            _refused(site, row_id, owner, subscription.subscriber_id, subscription.group_id, exc, now)
            return "failed", error
        if isinstance(exc, PermanentFailure) or now - queued_at >= GIVE_UP_AFTER:
            _finish(site, row_id, owner, status=DeliveryStatus.FAILED, last_error=error)
            return "failed", error
        wait = RETRY_AFTER[min(attempts, len(RETRY_AFTER)) - 1]
        _finish(site, row_id, owner, status=DeliveryStatus.QUEUED, due_at=now + wait, last_error=error)
        return "retried", error
    except NewsletterError as exc:
        # This one email cannot be built (an address the relay cannot take, a template):
        # recorded against its row, and the rest of the queue goes on.
        error = str(exc)[:500]
        _finish(site, row_id, owner, status=DeliveryStatus.FAILED, last_error=error)
        return "failed", error
    _finish(site, row_id, owner, status=DeliveryStatus.SENT, sent_at=utcnow(), last_error=None)
    return "sent", None


def drain(site: Site, transport: Transport, *, now: datetime | None = None) -> DrainReport:
    """Send every confirmation email that is due (``now``: the clock, for tests); what happened.

    The transport is the caller's: it is used, not closed.
    """
    report = DrainReport()
    owner = new_owner()
    signer = Signer(site.settings.signing_key)
    while True:
        moment = now or utcnow()
        rows = claim(site, owner, now=moment)
        if not rows:
            return report
        for row_id in rows:
            outcome, error = _send_one(site, signer, transport, row_id, owner, moment)
            setattr(report, outcome, getattr(report, outcome) + 1)
            if error is not None and len(report.errors) < 20:
                report.errors.append(f"confirmation #{row_id}: {error}")
                log.warning("confirmation #%s %s: %s", row_id, outcome, error)
        if len(rows) < BATCH:
            return report
