"""What waits to go out: the queries a scheduler tick asks before it loads a sender.

Each answers from the database alone, with no message building, template rendering or
transport imported, so a tick with nothing to send (most of them, from cron every
minute) pays for these few queries and not for loading the senders
(``runner.py``, ``probes.py``, ``confirmations.py``).
"""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select

from newsletter.core.models import (
    MANUAL_SCHEDULE,
    ConfirmationMail,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Probe,
)
from newsletter.core.site import Site


def editions_due(site: Site, at: datetime) -> list[int]:
    """The editions a tick at ``at`` sends or resumes, oldest first.

    ``scheduling/scheduler.py`` (``send_due``) says which are due and why.
    """
    planned = col(Edition.scheduled_at).is_not(None)
    with site.transaction() as session:
        due = session.exec(
            select(Edition.id)
            .where(
                (col(Edition.status) == EditionStatus.SENDING)
                | (
                    (col(Edition.status) == EditionStatus.APPROVED)
                    & (
                        (planned & (col(Edition.scheduled_at) <= at))
                        | (~planned & (col(Edition.schedule) != MANUAL_SCHEDULE))
                    )
                ),
            )
            .order_by(col(Edition.id))
        ).all()
    return [edition_id for edition_id in due if edition_id is not None]


def probes_wanted(site: Site, at: datetime) -> list[int]:
    """The bounce probes asked for and not yet sent nor expired at ``at``, oldest first."""
    with site.transaction() as session:
        wanted = session.exec(
            select(Probe.id)
            .where(col(Probe.sent_at).is_(None), col(Probe.expires_at) > at)
            .order_by(col(Probe.id))
        ).all()
    return [probe_id for probe_id in wanted if probe_id is not None]


def confirmations_queued(site: Site) -> int:
    """How many confirmation emails wait to be sent (due or not)."""
    with site.transaction() as session:
        return session.exec(
            select(sa.func.count())
            .select_from(ConfirmationMail)
            .where(col(ConfirmationMail.status).in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]))
        ).one()
