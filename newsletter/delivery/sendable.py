"""What may be sent, and through which kind of transport: the runner's refusals, one line each.

An edition is sent once it is approved; one that went to the outbox folder only
(``written``) can still be sent for real. A send that delivers and one that only
writes files (the outbox transport) never mix within one edition's run: writing the
rest of a real send to files would mark members served who got nothing.
"""

from sqlmodel import Session

from newsletter.core.errors import StateError
from newsletter.core.models import Edition, EditionStatus
from newsletter.delivery import claims, lease


def check(edition: Edition, *, delivers: bool, dry_run: bool) -> None:
    """Refuse a draft (unless only counting), a finished edition, a second outbox run."""
    if edition.status == EditionStatus.DRAFT and not dry_run:
        # A dry run may count a draft's audience: it sends nothing.
        raise StateError(
            f"edition #{edition.id} is a draft; approve it first (`newsletter editions approve {edition.id}`)"
        )
    if edition.status in {EditionStatus.SENT, EditionStatus.CANCELLED}:
        raise StateError(f"edition #{edition.id} is already {edition.status}; nothing to send")
    if edition.status == EditionStatus.WRITTEN and not delivers and not dry_run:
        raise StateError(
            f"edition #{edition.id} is already written to the outbox folder (nobody received it); "
            f"send it for real through a relay: `newsletter --transport smtp editions send {edition.id}`"
        )


def check_run(session: Session, edition: Edition, *, delivers: bool, owner: str) -> None:
    """Refuse to mix an outbox run and a real send of the same edition (under its lease)."""
    status = EditionStatus(edition.status)
    if status not in {EditionStatus.SENDING, EditionStatus.PAUSED, EditionStatus.WRITTEN}:
        return
    if not delivers and not edition.outbox_only:
        raise StateError(
            f"edition #{edition.id} is being delivered for real; the outbox transport would mark the "
            "rest delivered without sending it: resume it through a relay (--transport smtp)"
        )
    if delivers and edition.outbox_only:
        # Rows a live worker is writing to the outbox would be recorded over the fresh start.
        claims.recover_abandoned(session, edition.id or 0)
        holders = [lease.describe(o) for o in claims.claimers(session, edition.id or 0) if o != owner]
        if holders:
            raise StateError(
                f"edition #{edition.id} is still being written to the outbox by {', '.join(holders)}; "
                "send it for real when that is done"
            )
