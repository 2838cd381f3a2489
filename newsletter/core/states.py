"""Transition tables: which status changes are legal for editions, memberships and items.

Every status change in the library goes through :func:`move`, which refuses a move the
table does not list with a :class:`~newsletter.core.errors.TransitionError` naming the record,
where it is and where it was asked to go. Moving a record to the state it is already in
changes nothing (a resumed send of an edition that is ``sending``, a second unsubscribe).

Who makes which move (docs/architecture.md has the same table):

- editions: ``editions.approve`` (draft -> approved), the delivery runner (``delivery/runner.py``:
  approved, paused or written -> sending -> sent | written | paused), ``editions.cancel``
  (anything unsent -> cancelled); ``written`` is a send that went to the outbox folder only;
- memberships: sign-up and import (-> pending | active), confirmation (pending -> active),
  unsubscribes (-> unsubscribed), the bounce policy (-> bounced), complaints (-> complained);
  a new confirmed opt-in is the only way back to active from an ended membership: the
  table lists those moves, and :data:`OPT_IN_ONLY` says that only a caller that has
  one (``move(..., opt_in=True)``: the confirmation link, the preferences page) may
  make them, never an import or ``subscribers add``;
- items: review (proposed -> approved | rejected, and back); ``items.set_status`` also
  refuses to move an item away from approved while an unsent edition carries it.
"""

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, TypeVar

from newsletter.core.errors import TransitionError
from newsletter.core.messages import Label, Message, Param
from newsletter.core.models import EditionStatus, ItemStatus, MembershipStatus, utcnow

S = TypeVar("S", bound=enum.StrEnum)

EDITION: Mapping[EditionStatus, frozenset[EditionStatus]] = {
    EditionStatus.DRAFT: frozenset({EditionStatus.APPROVED, EditionStatus.CANCELLED}),
    EditionStatus.APPROVED: frozenset({EditionStatus.SENDING, EditionStatus.CANCELLED}),
    EditionStatus.SENDING: frozenset(
        {EditionStatus.SENT, EditionStatus.WRITTEN, EditionStatus.PAUSED, EditionStatus.CANCELLED}
    ),
    EditionStatus.PAUSED: frozenset({EditionStatus.SENDING, EditionStatus.CANCELLED}),
    # Written to the outbox folder only: nobody received it, so it may still be sent for real.
    EditionStatus.WRITTEN: frozenset({EditionStatus.SENDING, EditionStatus.CANCELLED}),
    EditionStatus.SENT: frozenset(),
    EditionStatus.CANCELLED: frozenset(),
}

# An ended membership (unsubscribed, bounced, complained) is sticky: only a new confirmed
# opt-in (a sign-up confirmed by its link) makes it active again, never an import.
_ENDED = frozenset({MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED, MembershipStatus.COMPLAINED})
MEMBERSHIP: Mapping[MembershipStatus, frozenset[MembershipStatus]] = {
    MembershipStatus.PENDING: frozenset({MembershipStatus.ACTIVE}) | _ENDED,
    MembershipStatus.ACTIVE: _ENDED,
    MembershipStatus.UNSUBSCRIBED: frozenset({MembershipStatus.ACTIVE, MembershipStatus.PENDING}),
    MembershipStatus.BOUNCED: frozenset(
        {MembershipStatus.ACTIVE, MembershipStatus.PENDING, MembershipStatus.UNSUBSCRIBED}
    ),
    MembershipStatus.COMPLAINED: frozenset(
        {MembershipStatus.ACTIVE, MembershipStatus.PENDING, MembershipStatus.UNSUBSCRIBED}
    ),
}

# Back to active from an ended membership: a move only a new confirmed opt-in makes.
OPT_IN_ONLY: frozenset[tuple[MembershipStatus, MembershipStatus]] = frozenset(
    (ended, MembershipStatus.ACTIVE) for ended in _ENDED
)

ITEM: Mapping[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.PROPOSED: frozenset({ItemStatus.APPROVED, ItemStatus.REJECTED}),
    ItemStatus.APPROVED: frozenset({ItemStatus.REJECTED, ItemStatus.PROPOSED}),
    ItemStatus.REJECTED: frozenset({ItemStatus.APPROVED, ItemStatus.PROPOSED}),
}

_TABLES: Mapping[type[enum.StrEnum], Mapping[object, frozenset[object]]] = {
    EditionStatus: EDITION,  # type: ignore[dict-item]
    MembershipStatus: MEMBERSHIP,  # type: ignore[dict-item]
    ItemStatus: ITEM,  # type: ignore[dict-item]
}


class Stateful(Protocol[S]):
    """A record with a status (an Edition, a Membership, an Item)."""

    id: int | None
    status: S


def allowed(current: S, target: S, *, opt_in: bool = False) -> bool:
    """Whether the table lets a record go from ``current`` to ``target`` (staying put is allowed).

    ``opt_in``: the caller acts on a new confirmed opt-in, which alone may make the
    moves in :data:`OPT_IN_ONLY`.
    """
    if current == target:
        return True
    if _opt_in_only(current, target) and not opt_in:
        return False
    table = _TABLES[type(target)]
    return target in table.get(current, frozenset())


def _opt_in_only(current: enum.StrEnum, target: enum.StrEnum) -> bool:
    # A StrEnum equals its string: compare memberships' statuses only.
    return isinstance(target, MembershipStatus) and (current, target) in OPT_IN_ONLY


def move(record: Stateful[S], target: S, *, at: datetime | None = None, opt_in: bool = False) -> bool:
    """Set ``record.status`` to ``target`` if the table allows it; True if it changed.

    A membership's ``status_changed_at`` is set with it. An illegal move raises
    :class:`TransitionError` and leaves the record as it was.
    """
    current = type(target)(record.status)
    if current == target:
        return False
    if not allowed(current, target, opt_in=opt_in):
        kind = type(record).__name__.lower()
        if _opt_in_only(current, target):
            raise TransitionError(
                "{kind} #{id} is {current}; only a new confirmed opt-in can make it {target}",
                kind=Label("record", kind),
                id=record.id,
                current=current,
                target=target,
            )
        context = type(target).__name__
        legal: list[Param] = [
            Label(context, str(s)) for s in sorted(map(str, _TABLES[type(target)].get(current, ())))
        ]
        raise TransitionError(
            "{kind} #{id} is {current}; it cannot become {target} (from {current}: {legal})",
            kind=Label("record", kind),
            id=record.id,
            current=current,
            target=target,
            legal=legal or [Message("none (it is final)")],
        )
    record.status = target
    if hasattr(record, "status_changed_at"):
        record.status_changed_at = at or utcnow()
    return True
