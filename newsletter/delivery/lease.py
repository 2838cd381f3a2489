"""The send lease: which process owns an edition's send, and until when.

One ``send_lease`` row per edition being sent: its owner's id and when the lease runs
out unless renewed. The owner renews it every :data:`RENEW_EVERY` seconds while it
works and deletes it when it stops. Another process takes the lease only when it is
free or has *lapsed*: its time ran out (the owner stalled or died on another host), or
the owner is known to be gone (:func:`gone`: it ran on this machine and its process no
longer exists, as after a ``kill -9``). Taking, renewing and giving up are single
compare-and-set statements, so two processes never both believe they hold it.

An owner id is ``host:pid:random``. The host part carries a short tag of this machine's
boot and process namespace (``news1/3fa9c2``): a process check is only made for owners
of the same tag, since the same process number elsewhere (another host, another
container) says nothing about this one.

The clocks of hosts sharing a database must agree to well within :data:`LEASE_TTL`
(NTP does); expiry is compared with the reader's clock.

No PostgreSQL advisory lock is added on top: a session lock vanishes with its
connection, not with its process, so a sender whose connection dropped (and whose
pool reconnected) would go on sending after another had taken the lock. The lease
row is renewed through any connection, and an owner that finds it taken stops.
"""

import contextlib
import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from newsletter.core.errors import LeaseHeld, LeaseLost
from newsletter.core.models import SendLease, utcnow

# A lease not renewed for this long has lapsed: its owner stalled or died.
LEASE_TTL = timedelta(minutes=2)
# The owner renews its lease (and the rows it holds) this often, in seconds.
RENEW_EVERY = 20.0

_TABLE: sa.Table = SendLease.__table__  # type: ignore[attr-defined]


@cache
def host() -> str:
    """This machine's name with a tag of its boot and process namespace (``news1/3fa9c2``)."""
    name = socket.gethostname() or "localhost"
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_text() if path.endswith("boot_id") else os.readlink(path))
    if not parts:
        return name
    return f"{name}/{hashlib.sha256(''.join(parts).encode()).hexdigest()[:6]}"


def new_owner() -> str:
    """A fresh owner id for a runner of this process: ``host:pid:random``."""
    return f"{host()}:{os.getpid()}:{secrets.token_hex(4)}"


def describe(owner: str) -> str:
    """An owner id for people: ``process 4242 on news1``."""
    place, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return f"process {pid} on {place.partition('/')[0]}" if pid.isdigit() else owner


def gone(owner: str) -> bool:
    """True when the owner's process is known to have ended (same machine, no such process).

    False when it may still run: a process of another machine, or one that exists (a
    process number reused by another program only makes us wait for the lease to lapse).
    """
    place, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if place != host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A killed process its parent has not reaped yet is a zombie: it runs nothing.
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state == "Z"
    return False


@dataclass(frozen=True)
class Holder:
    """Who holds an edition's lease, since when, until when unless renewed."""

    owner: str
    since: datetime
    expires_at: datetime

    def lapsed(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or utcnow()) or gone(self.owner)


def held(edition_id: int, holder: Holder) -> LeaseHeld:
    """The one-line refusal for a second send of an edition someone else is sending."""
    since = holder.since.strftime("%Y-%m-%d %H:%M:%S UTC")
    return LeaseHeld(
        f"edition #{edition_id} is being sent by {describe(holder.owner)} (since {since}); "
        f"`newsletter editions send {edition_id} --wait` waits for it to finish",
        owner=holder.owner,
        since=holder.since,
    )


def holder(session: Session, edition_id: int) -> Holder | None:
    """The edition's lease row, lapsed or not; None when nobody holds it."""
    row = session.connection().execute(sa.select(_TABLE).where(_TABLE.c.edition_id == edition_id)).first()
    return None if row is None else Holder(row.owner, row.acquired_at, row.expires_at)


def take(session: Session, edition_id: int, owner: str, *, now: datetime | None = None) -> str | None:
    """Take the edition's lease for ``owner``; raise :class:`LeaseHeld` if a live process holds it.

    Returns the id of the lapsed owner it was taken from (None if it was free or already
    ours). The first statement writes, so on SQLite the transaction holds the write lock
    from its start and reads nothing stale.
    """
    now = now or utcnow()
    connection = session.connection()
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(_TABLE)
    fresh = {"edition_id": edition_id, "owner": owner, "acquired_at": now, "expires_at": now + LEASE_TTL}
    added = connection.execute(insert.values(fresh).on_conflict_do_nothing(index_elements=["edition_id"]))
    if added.rowcount == 1:
        return None
    while True:
        current = holder(session, edition_id)
        if current is None:
            connection.execute(insert.values(fresh).on_conflict_do_nothing(index_elements=["edition_id"]))
            continue
        if current.owner == owner:
            renew(session, edition_id, owner, now=now)
            return None
        if not current.lapsed(now):
            raise held(edition_id, current)
        # Compare and set: only if nobody took it over meanwhile.
        taken = connection.execute(
            sa.update(_TABLE)
            .where(_TABLE.c.edition_id == edition_id, _TABLE.c.owner == current.owner)
            .values(owner=owner, acquired_at=now, expires_at=now + LEASE_TTL)
        )
        if taken.rowcount == 1:
            return current.owner


def renew(session: Session, edition_id: int, owner: str, *, now: datetime | None = None) -> None:
    """Extend the lease; :class:`LeaseLost` if it is no longer ours (it lapsed and was taken)."""
    renewed = session.connection().execute(
        sa.update(_TABLE)
        .where(_TABLE.c.edition_id == edition_id, _TABLE.c.owner == owner)
        .values(expires_at=(now or utcnow()) + LEASE_TTL)
    )
    if renewed.rowcount != 1:
        raise LeaseLost(
            f"the send lease of edition #{edition_id} lapsed and was taken over; "
            "this process stopped sending it (what it handed over is recorded)"
        )


def give_up(session: Session, edition_id: int, owner: str) -> None:
    """Release the lease if it is still ours."""
    session.connection().execute(
        sa.delete(_TABLE).where(_TABLE.c.edition_id == edition_id, _TABLE.c.owner == owner)
    )
