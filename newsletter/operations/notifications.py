"""Notifications: the notices each person collected, sent as one digest an hour at most.

Each tick (the daemon's notification job, ``run-due``) calls :func:`run`: the state
becomes notices (``notices.py``), then each person with notices waiting and no digest
in the last ``[notifications] digest_minutes`` (60) gets one email listing every notice
since their last digest, through the site's transport. The claim on a person's digest
is a conditional update of their ``last_digest_at``, so two processes never send the
same digest twice; a digest that fails to go out gives the claim back and is tried at
the next tick. The only possible repeat is a digest the relay accepted just before a
crash, before its notices were marked sent.

Each digest carries a signed "stop these notifications" link (``core/tokens.py``,
purpose ``notifications``): the page behind it (``web/admin/notifications.py``) turns
them off for that person; their account page turns them on again.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select, update

from newsletter.core import audit
from newsletter.core.errors import BadToken, NewsletterError
from newsletter.core.models import Notice, NotificationSetting, User
from newsletter.core.settings import Settings
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery.transports import Transport
from newsletter.operations import notices

log = logging.getLogger(__name__)
STOP_PATH = "/admin/notifications/stop/"


@dataclass
class NotifyReport:
    """What one round did: notices recorded, digests sent (to whom), and failures."""

    noticed: int = 0
    sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        found = [f"notifications: {self.noticed} new notice(s)"] if self.noticed else []
        found += [f"notifications: digest sent to {email}" for email in self.sent]
        return found + [f"notifications: {error}" for error in self.errors]


# -- the stop link ---------------------------------------------------------------------------


def stop_url(settings: Settings, user_id: int) -> str:
    """The signed link that turns the person's notifications off (it does not expire)."""
    token = Signer(settings.signing_key).make("notifications", user_id, 0)
    return f"{settings.site.base_url}{STOP_PATH}{token}"


def user_of(session: Session, settings: Settings, token: str) -> User:
    """The user a stop link names; BadToken for a forged link or a removed user."""
    data = Signer(settings.signing_key).read("notifications", token)
    user = session.get(User, data.subscriber_id)
    if user is None:
        raise BadToken("this link is for an account that no longer exists")
    return user


def _setting(session: Session, user_id: int) -> NotificationSetting:
    row = session.get(NotificationSetting, user_id)
    if row is None:
        row = NotificationSetting(user_id=user_id)
        session.add(row)
        session.flush()
    return row


def enabled(session: Session, user_id: int) -> bool:
    row = session.get(NotificationSetting, user_id)
    return row is None or row.enabled


def set_enabled(session: Session, user_id: int, on: bool, *, actor: str, now: datetime) -> bool:
    """Turn the person's notifications on or off; whether that changed anything.

    Off also drops the notices waiting for them, so turning them on again starts afresh.
    """
    row = _setting(session, user_id)
    if row.enabled == on:
        return False
    row.enabled, row.changed_at = on, now
    session.add(row)
    if not on:
        session.exec(delete(Notice).where(col(Notice.user_id) == user_id, col(Notice.sent_at).is_(None)))
    user = session.get(User, user_id)
    audit.record(
        session,
        "notifications-on" if on else "notifications-off",
        actor=actor,
        source="web",
        user=user.email if user else user_id,
    )
    return True


# -- digests ---------------------------------------------------------------------------------


def _claim(session: Session, user_id: int, now: datetime, every: timedelta) -> tuple[bool, datetime | None]:
    """Take the person's digest slot: whether it was free, and their previous ``last_digest_at``."""
    row = _setting(session, user_id)
    if not row.enabled:
        return False, None
    previous = row.last_digest_at
    free = col(NotificationSetting.last_digest_at).is_(None) | (
        col(NotificationSetting.last_digest_at) <= now - every
    )
    taken = session.exec(
        update(NotificationSetting)
        .where(col(NotificationSetting.user_id) == user_id, free, col(NotificationSetting.enabled))
        .values(last_digest_at=now)
    )
    return taken.rowcount == 1, previous


def _waiting(site: Site, user_id: int, now: datetime) -> tuple[User, list[Notice], datetime | None] | None:
    """Claim the person's digest and read their notices; None if it is not due (or already taken)."""
    every = timedelta(minutes=site.settings.notifications.digest_minutes)
    with site.transaction() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:
            return None
        taken, previous = _claim(session, user_id, now, every)
        if not taken:
            return None
        waiting = list(
            session.exec(
                select(Notice)
                .where(col(Notice.user_id) == user_id, col(Notice.sent_at).is_(None))
                .order_by(col(Notice.id))
            )
        )
        session.expunge_all()
    return user, waiting, previous


def _settle(site: Site, user_id: int, ids: list[int], now: datetime, previous: datetime | None) -> None:
    """Mark the notices ``ids`` sent; with none, give the digest slot back (``previous``)."""
    with site.transaction() as session:
        if ids:
            session.exec(update(Notice).where(col(Notice.id).in_(ids)).values(sent_at=now))
        else:
            session.exec(
                update(NotificationSetting)
                .where(col(NotificationSetting.user_id) == user_id)
                .values(last_digest_at=previous)
            )


def send_digests(
    site: Site, transport_factory: Callable[[], Transport], now: datetime, report: NotifyReport
) -> None:
    """Send a digest to each person whose notices wait and whose last digest is old enough."""
    with site.transaction() as session:
        people = sorted(set(session.exec(select(Notice.user_id).where(col(Notice.sent_at).is_(None)))))
    if not people:
        return
    # Loaded here: the digest's message builders are not needed by a round with nothing to send.
    from newsletter.delivery.notifymail import digest_message

    transport: Transport | None = None
    try:
        for user_id in people:
            found = _waiting(site, user_id, now)
            if found is None:
                continue
            user, waiting, previous = found
            if not waiting:
                _settle(site, user_id, [], now, previous)
                continue
            message = digest_message(
                site.settings,
                user_id=user_id,
                email=user.email,
                name=user.name,
                notices=[notices.stored(notice) for notice in waiting],
                stop_url=stop_url(site.settings, user_id),
            )
            try:
                transport = transport or transport_factory()
                transport.send(message)
            except NewsletterError as exc:
                _settle(site, user_id, [], now, previous)
                report.errors.append(f"digest to {user.email} not sent: {exc}")
                continue
            _settle(site, user_id, [n.id or 0 for n in waiting], now, previous)
            report.sent.append(user.email)
    finally:
        if transport is not None:
            transport.close()


def run(site: Site, transport_factory: Callable[[], Transport], now: datetime) -> NotifyReport:
    """One round: record what the state shows, then send the digests that are due."""
    report = NotifyReport()
    with site.transaction() as session:
        report.noticed = notices.record(session, site.settings, now)
    send_digests(site, transport_factory, now, report)
    for line in report.lines():
        log.info(line)
    return report
