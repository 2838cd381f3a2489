"""The bounce policy: one rule for every failed delivery, however it became known.

A failure reaches us in two ways: the relay refuses a recipient with a 5xx reply while
an edition is sent (the delivery engine records it through ``outbox.record``), or a
failure notice (DSN) comes back later and ``newsletter bounces process`` reads it. Both
describe it as a :class:`Bounce` (who, whether the MTA gave up, the RFC 3463 status,
how it was found, which group and edition) and call :func:`apply`, so both follow the
same rule, documented in docs/operations.md:

- **hard or soft** (:func:`judge`): hard when the MTA gave up (a 5xx reply, a DSN's
  ``Action: failed``) *and* the status says the mailbox or its domain is gone
  (:data:`GONE`); everything else is soft, a failure that gives no status included;
- with ``[bounces] hard_is_final`` a hard failure ends every live (active or pending)
  membership of the address as ``bounced`` at once;
- otherwise the failure scores in its group: each day with a failure adds that day's
  strongest weight once (``hard_weight`` or ``soft_weight``), the score starts again
  from zero after ``window_days`` without one, and at ``threshold`` the membership
  ends as ``bounced``;
- every membership it touches gets one ``bounce`` event of the same shape (message_id,
  verdict, status, reason, permanent, via, outcome, added, score), never an address.

A membership ends through the transition table (``states.move``). The caller's
transaction holds everything, so a failure is recorded with its consequences or not
at all.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from newsletter.core import audit, states
from newsletter.core.models import Event, Membership, MembershipStatus
from newsletter.core.settings import BouncesSection

# RFC 3463 subject.detail codes that say the mailbox or its domain is gone.
GONE = {
    "1.1": "mailbox does not exist",
    "1.2": "domain does not exist",
    "1.3": "malformed address",
    "1.6": "mailbox has moved",
    "1.10": "domain accepts no mail",
    "2.1": "mailbox disabled",
    "4.4": "no route to the domain",
}
SOFT_REASONS = {"2.2": "mailbox full", "3.4": "message too big", "4.7": "delivery expired"}
LIVE = (MembershipStatus.ACTIVE, MembershipStatus.PENDING)


@dataclass(frozen=True)
class Bounce:
    """One failed delivery to one subscriber, as the relay's reply or a returned notice gave it."""

    subscriber_id: int
    permanent: bool  # the MTA gave up (a 5xx reply, DSN Action: failed) rather than will retry
    status: str | None  # the RFC 3463 code ("5.1.1"), when the reply or the notice gives one
    # "smtp" for a refusal at send time; for a notice, how its member was found:
    # "verp", "list-id" or "address".
    via: str
    # The group it scores in (the edition's); None: every live membership of the address.
    group_id: int | None
    edition_id: int | None = None
    message_id: str | None = None  # the notice's own Message-ID; None at send time


@dataclass(frozen=True)
class Scored:
    """What the policy did to one membership."""

    group_id: int
    outcome: str  # "bounced" or "scored"
    added: float
    score: float


@dataclass(frozen=True)
class Applied:
    """What one failure did: its verdict, and each membership it touched."""

    hard: bool
    reason: str
    final: bool  # a hard failure that ended the memberships at once (hard_is_final)
    memberships: tuple[Scored, ...]

    @property
    def ended(self) -> int:
        return sum(m.outcome == "bounced" for m in self.memberships)


def judge(permanent: bool, status: str | None) -> tuple[bool, str]:
    """Hard or soft (True: hard), and the reason in words, from the MTA's verdict and the status."""
    detail = status.split(".", 1)[1] if status else None
    if permanent and detail in GONE:
        return True, GONE[detail or ""]
    if not permanent:
        return False, "delayed, still trying"
    if detail in SOFT_REASONS:
        return False, SOFT_REASONS[detail or ""]
    return False, f"failed with status {status}" if status else "failed, no status given"


def reply_status(code: int | None, text: str) -> str | None:
    """The enhanced status code (RFC 2034) an SMTP reply gives right after its reply code.

    ``550 5.1.1 <x@example.org>: user unknown`` gives ``5.1.1``; a bare ``550 user
    unknown`` gives None, as does a code whose class is not the reply's (a relay's
    mistake: the text then says nothing reliable).
    """
    if code is None:
        return None
    found = re.search(rf"(?<!\d){code}[ -]([245])\.(\d{{1,3}})\.(\d{{1,3}})(?![\d.]*\d)", text)
    if found is None or found.group(1) != str(code)[0]:
        return None
    return ".".join(found.groups())


def apply(
    session: Session, config: BouncesSection, bounce: Bounce, *, actor: str, source: str, at: datetime
) -> Applied:
    """Judge the failure and act on the subscriber's memberships; see the module docstring."""
    hard, reason = judge(bounce.permanent, bounce.status)
    query = select(Membership).where(
        col(Membership.subscriber_id) == bounce.subscriber_id, col(Membership.status).in_(LIVE)
    )
    live = list(session.exec(query.order_by(col(Membership.group_id))))
    detail: dict[str, Any] = {
        "message_id": bounce.message_id,
        "verdict": "hard" if hard else "soft",
        "status": bounce.status,
        "reason": reason,
        "permanent": bounce.permanent,
        "via": bounce.via,
    }
    final = hard and config.hard_is_final
    touched = []
    if final:
        for membership in live:
            states.move(membership, MembershipStatus.BOUNCED, at=at)
            touched.append(_record(session, bounce, membership, "bounced", 0.0, detail, actor, source, at))
        return Applied(hard, reason, True, tuple(touched))
    weight = config.hard_weight if hard else config.soft_weight
    for membership in live:
        if bounce.group_id is not None and membership.group_id != bounce.group_id:
            continue
        added = _add(session, config, membership, weight, at)
        outcome = "scored"
        if membership.bounce_score >= config.threshold:
            states.move(membership, MembershipStatus.BOUNCED, at=at)
            outcome = "bounced"
        touched.append(_record(session, bounce, membership, outcome, added, detail, actor, source, at))
    return Applied(hard, reason, False, tuple(touched))


def _add(
    session: Session, config: BouncesSection, membership: Membership, weight: float, at: datetime
) -> float:
    """Add the day's weight once: a second failure the same day adds only what it exceeds."""
    since = at - timedelta(days=config.window_days)
    query = select(Event).where(
        Event.kind == "bounce",
        Event.subscriber_id == membership.subscriber_id,
        Event.group_id == membership.group_id,
        col(Event.at) > since,
        col(Event.at) <= at,
    )
    recent = list(session.exec(query))
    if not recent:
        membership.bounce_score = 0.0
    today = sum(float(json.loads(e.detail).get("added") or 0.0) for e in recent if e.at.date() == at.date())
    added = max(0.0, weight - today)
    membership.bounce_score += added
    return added


def _record(
    session: Session,
    bounce: Bounce,
    membership: Membership,
    outcome: str,
    added: float,
    detail: dict[str, Any],
    actor: str,
    source: str,
    at: datetime,
) -> Scored:
    session.add(membership)
    # The edition counts only in its own group: a hard failure ends the other groups'
    # memberships too, but the failure did not come from their editions.
    edition_id = bounce.edition_id if membership.group_id == bounce.group_id else None
    event = audit.record(
        session,
        "bounce",
        actor=actor,
        source=source,
        subscriber_id=membership.subscriber_id,
        group_id=membership.group_id,
        edition_id=edition_id,
        outcome=outcome,
        added=added,
        score=membership.bounce_score,
        **detail,
    )
    event.at = at
    return Scored(membership.group_id, outcome, added, membership.bounce_score)
