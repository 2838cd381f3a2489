"""Listing and exporting a group's members: streamed from the database, written as CSV.

The CSV is what ``subscribers import`` reads back unchanged; a file is written whole
or not at all.
"""

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlmodel import Session, col, select

from newsletter.audience import csvfile
from newsletter.core.errors import file_error
from newsletter.core.models import Membership, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.site import get_group


@dataclass(frozen=True)
class Member:
    email: str
    name: str | None
    language: str | None
    status: str
    source: str
    since: str
    # The site's custom fields that are set: name -> value.
    fields: Mapping[str, str] = field(default_factory=dict)
    # The membership's bounce score (``feedback/policy.py``): at the threshold it ends.
    bounce_score: float = 0.0

    @classmethod
    def of(cls, subscriber: Subscriber, membership: Membership) -> "Member":
        return cls(
            subscriber.email,
            subscriber.name,
            subscriber.language,
            str(membership.status),
            membership.source,
            membership.created_at.isoformat(timespec="seconds"),
            dict(subscriber.field_values or {}),
            membership.bounce_score,
        )


def members(
    session: Session, settings: Settings, group_slug: str, statuses: Iterable[str] = ()
) -> Iterator[Member]:
    """The group's members in address order, streamed from the database.

    Not a generator itself: an unknown group fails here, before a caller has
    written a CSV header or created an output file.
    """
    group = get_group(session, settings, group_slug)
    query = (
        select(Subscriber, Membership)
        .join(Membership, col(Membership.subscriber_id) == Subscriber.id)
        .where(Membership.group_id == group.id)
        .order_by(col(Subscriber.email_key))
    )
    wanted = list(statuses)
    if wanted:
        query = query.where(col(Membership.status).in_(wanted))
    rows = session.exec(query.execution_options(yield_per=1000))
    return (Member.of(subscriber, membership) for subscriber, membership in rows)


COLUMNS = ("email", "name", "language", "status", "source", "since")


def write_rows(rows: Iterable[Member], out: IO[str], fields: Sequence[str] = ()) -> Iterator[Member]:
    """Write the header, then each member, yielding it once written (a web page streams the CSV so).

    ``fields`` are the site's custom fields, one column each after the built-in ones.
    Every cell goes through the guarded writer: formulas are neutralised.
    """
    writer = csvfile.writer(out)
    writer.writerow([*COLUMNS, *fields])
    for member in rows:
        writer.writerow(
            [
                member.email,
                member.name or "",
                member.language or "",
                member.status,
                member.source,
                member.since,
                *(member.fields.get(name, "") for name in fields),
            ]
        )
        yield member


def export_csv(rows: Iterable[Member], out: IO[str], fields: Sequence[str] = ()) -> int:
    """Write members as a CSV that ``subscribers import`` reads back unchanged (formulas neutralised)."""
    return sum(1 for _ in write_rows(rows, out, fields))


def export_file(rows: Iterable[Member], path: Path, fields: Sequence[str] = ()) -> int:
    """Write members to a CSV file, whole or not at all: a temporary file is renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # os.open with 0o666 leaves the permissions to the umask, as open() would.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            count = export_csv(rows, handle, fields)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise file_error(exc, "cannot write", path) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count
