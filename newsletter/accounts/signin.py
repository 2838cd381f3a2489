"""Signing in: one-time links (15 minutes, single use, stored hashed) and optional passwords.

A link is asked for by address on the sign-in page, or printed by ``newsletter users
login-link`` (first sign-in, recovery). It opens a page with one button: only the
button's POST consumes it (:func:`consume`), so a mail scanner that fetches the link
uses nothing up. A used, expired, unknown or forged link gets the same answer.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select, update

from newsletter.accounts import passwords, users
from newsletter.accounts.sessions import digest, new_secret
from newsletter.core import audit
from newsletter.core.errors import BadToken, NotFoundError
from newsletter.core.models import SignInToken, User
from newsletter.core.settings import Settings

LINK_LIFETIME = timedelta(minutes=15)
SIGN_IN_PATH = "/admin/sign-in/"
_UNUSABLE = "this sign-in link has expired or was already used; ask for a new one on the sign-in page"


@dataclass(frozen=True)
class Link:
    """A sign-in link just made, and whom it is for."""

    token: str
    email: str
    name: str
    expires_at: datetime
    # The user's id: the email's envelope sender names it (``verp.envelope_senders``).
    user_id: int = 0

    def url(self, settings: Settings) -> str:
        return f"{settings.site.base_url}{SIGN_IN_PATH}{self.token}"


def _issue(session: Session, user: User, now: datetime) -> Link:
    token = new_secret()
    expires = now + LINK_LIFETIME
    session.add(
        SignInToken(token_hash=digest(token), user_id=user.id or 0, created_at=now, expires_at=expires)
    )
    return Link(token, user.email, user.name, expires, user.id or 0)


def request_link(session: Session, email: str, *, now: datetime) -> Link | None:
    """A link for the active user with this address, or None (the caller answers the same either way)."""
    user = users.find(session, email)
    if user is None or not user.active:
        return None
    return _issue(session, user, now)


def login_link(session: Session, email: str, *, now: datetime, actor: str) -> Link:
    """A link for the user (``users login-link``); a NotFoundError for an unknown or removed address."""
    user = users.get(session, email)
    if not user.active:
        raise NotFoundError(f"user {user.email!r} is deactivated; add a role to them first")
    audit.record(session, "sign-in-link", actor=actor, user=user.email)
    return _issue(session, user, now)


def check(session: Session, token: str, *, now: datetime) -> User:
    """The user a still-usable link is for, without using it up; BadToken otherwise."""
    row = session.exec(select(SignInToken).where(SignInToken.token_hash == digest(token))).one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise BadToken(_UNUSABLE)
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise BadToken(_UNUSABLE)
    return user


def consume(session: Session, token: str, *, now: datetime) -> User:
    """Use the link up and return its user; BadToken if it was used, expired or never made.

    One conditional UPDATE marks it used, so two POSTs racing with the same link (two
    tabs, two processes) cannot both succeed.
    """
    user = check(session, token, now=now)
    result = session.exec(
        update(SignInToken)
        .where(
            col(SignInToken.token_hash) == digest(token),
            col(SignInToken.used_at).is_(None),
            col(SignInToken.expires_at) > now,
        )
        .values(used_at=now)
    )
    if result.rowcount != 1:
        raise BadToken(_UNUSABLE)
    _signed_in(session, user, now, "link")
    return user


def with_password(session: Session, email: str, password: str, *, now: datetime) -> User | None:
    """The active user if the password is theirs, else None (same time spent either way)."""
    user = users.find(session, email)
    stored = user.password_hash if user is not None and user.active else None
    if not passwords.verify_password(stored, password) or user is None:
        return None
    if stored:
        user.password_hash = passwords.rehashed(stored, password)
    _signed_in(session, user, now, "password")
    return user


def _signed_in(session: Session, user: User, now: datetime, method: str) -> None:
    user.last_sign_in_at = now
    session.add(user)
    audit.record(session, "sign-in", actor=audit.user_actor(user.email), source="web", method=method)
