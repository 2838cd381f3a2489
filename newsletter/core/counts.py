"""How many of an edition's deliveries are in each state.

Editions (cancel, list), delivery (the runner's finish) and reports all read it, so it
lives below them all.
"""

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core.models import Delivery


def delivery_counts(session: Session, edition_id: int) -> dict[str, int]:
    """Delivery rows of the edition by status (``{"sent": 9, "queued": 2}``); absent states are left out."""
    query = (
        select(Delivery.status, func.count())
        .where(col(Delivery.edition_id) == edition_id)
        .group_by(col(Delivery.status))
    )
    return {str(status): int(n) for status, n in session.exec(query)}
