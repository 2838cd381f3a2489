"""A group's members a page at a time, for the workspace: search, filters, keyset pages.

Pages are cut by the address order (``subscriber.email_key``, unique and indexed) with
a cursor, not an OFFSET: page 2,000 of a 100,000-member group costs what page 1 costs,
and a member added or removed meanwhile does not shift the pages after it. The cursor
is the subscriber's id (the row to start after or before), so no address travels in a
URL. The search matches a substring of the address, the name or a custom field's value
(``subscriber.search_key``, case-folded); filters are the membership's status and the
value of a ``choice`` field.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.audience.export import Member
from newsletter.core.models import Membership, MembershipStatus, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.site import get_group

PAGE_SIZE = 50
# Up to this many members in view, fetching them all and sorting is cheap (see ``page``).
SMALL = 2000


@dataclass(frozen=True)
class Query:
    search: str = ""
    status: MembershipStatus | None = None
    # Choice fields' filters: name -> the value wanted.
    fields: Mapping[str, str] = field(default_factory=dict)
    # The subscriber id to start after (next page) or before (previous page).
    after: int | None = None
    before: int | None = None
    size: int = PAGE_SIZE


@dataclass(frozen=True)
class Row:
    id: int
    member: Member


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    # Cursors for the neighbouring pages (None: there is none).
    next_after: int | None
    previous_before: int | None
    # The whole group's members per status (not only the page's).
    counts: dict[str, int]


def page(session: Session, settings: Settings, group_slug: str, query: Query) -> Page:
    """One page of the group's members matching ``query``, in address order."""
    group = get_group(session, settings, group_slug)
    group_id = group.id or 0
    found_counts = counts(session, group_id)
    in_view = found_counts[query.status] if query.status else sum(found_counts.values())
    in_group = col(Membership.group_id) == group_id
    if in_view > SMALL and session.get_bind().dialect.name == "sqlite":
        # SQLite keeps no statistics unless told to ANALYZE: it would fetch the whole group
        # through the group's index and sort it to find the first 50. Hiding that index
        # (``+ 0``) makes it walk the addresses in order instead, through email_key's unique
        # index, and stop after 51 members: a page costs the same at 100 or 100,000.
        in_group = col(Membership.group_id) + 0 == group_id
    statement = (
        select(Subscriber, Membership)
        .join(Membership, col(Membership.subscriber_id) == Subscriber.id)
        .where(in_group)
    )
    if query.status is not None:
        statement = statement.where(Membership.status == query.status)
    if query.search.strip():
        statement = statement.where(
            col(Subscriber.search_key).contains(query.search.strip().casefold(), autoescape=True)
        )
    for name, value in query.fields.items():
        if name in settings.fields and value:
            statement = statement.where(col(Subscriber.field_values)[name].as_string() == value)
    backwards = query.before is not None and query.after is None
    cursor = query.before if backwards else query.after
    # A cursor whose member was erased meanwhile (``subscribers forget``) starts afresh.
    at = session.get(Subscriber, cursor) if cursor is not None else None
    if at is None:
        backwards, cursor = False, None
    else:
        key = col(Subscriber.email_key)
        statement = statement.where(key < at.email_key if backwards else key > at.email_key)
    order = col(Subscriber.email_key).desc() if backwards else col(Subscriber.email_key)
    found = list(session.exec(statement.order_by(order).limit(query.size + 1)))
    more = len(found) > query.size
    found = found[: query.size]
    if backwards:
        found.reverse()
    rows = [Row(subscriber.id or 0, Member.of(subscriber, membership)) for subscriber, membership in found]
    first, last = (rows[0].id, rows[-1].id) if rows else (None, None)
    if backwards:
        next_after, previous_before = last, first if more else None
    else:
        next_after, previous_before = last if more else None, first if cursor is not None else None
    return Page(rows, next_after, previous_before, found_counts)


def counts(session: Session, group_id: int) -> dict[str, int]:
    """The group's members per status, from ``ix_membership_group_status`` alone."""
    statement = (
        select(Membership.status, func.count())
        .where(Membership.group_id == group_id)
        .group_by(col(Membership.status))
    )
    found = {str(status): int(number) for status, number in session.exec(statement)}
    return {str(status): found.get(str(status), 0) for status in MembershipStatus}
