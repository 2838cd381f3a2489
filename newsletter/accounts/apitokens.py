"""Bearer tokens for the JSON API: made for a user, stored hashed, revoked by name.

A token acts as its user, within that user's permissions (the same
``accounts.permissions`` check as the workspace's pages), and a read-only token may
only read. The token itself is shown once, when it is made (``newsletter tokens
create`` prints it as the last word); the database keeps its SHA-256 only, as for
sign-in links and sessions, so a copy of the database calls no API.

Token names are unique across the site and never reused: a revoked token keeps its
row, and the audit log's ``token:NAME`` always names one token of one person.
"""

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select, update

from newsletter.accounts import users
from newsletter.accounts.permissions import Actor
from newsletter.accounts.sessions import digest, new_secret
from newsletter.core import audit
from newsletter.core.errors import InputError, NotFoundError
from newsletter.core.models import ApiToken, User
from newsletter.core.settings import Settings

# What a token looks like to the person who copies it: a prefix, then 256 random bits.
PREFIX = "nl_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# A token's last use is written at most this often (not on every request).
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Made:
    """A token just made: the secret (shown once) and whose it is."""

    token: str
    name: str
    email: str
    read_only: bool


@dataclass(frozen=True)
class Listed:
    """One token as ``tokens list`` shows it (never the secret)."""

    name: str
    email: str
    read_only: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _default_name(session: Session, user: User) -> str:
    """A free name for a token made without ``--name``: the mailbox's local part, then -2, -3..."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", user.email.split("@", 1)[0])[:50] or "token"
    taken = set(session.exec(select(ApiToken.name).where(col(ApiToken.name).startswith(base))))
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def create(
    session: Session, email: str, *, name: str | None, read_only: bool, actor: str, now: datetime
) -> Made:
    """A new token for the active user ``email``; InputError for a bad or taken name."""
    user = users.get(session, email)
    if not user.active:
        raise InputError(f"user {user.email!r} is deactivated; give them a role first")
    if name is None:
        name = _default_name(session, user)
    if not NAME.match(name):
        raise InputError(
            f"{name!r} is not a token name: use letters, digits, '.', '_' or '-' (at most 63), "
            "starting with a letter or digit"
        )
    if session.exec(select(ApiToken.id).where(ApiToken.name == name)).first() is not None:
        raise InputError(f"a token named {name!r} exists (or existed); choose another --name")
    secret = PREFIX + new_secret()
    session.add(
        ApiToken(
            token_hash=digest(secret),
            user_id=user.id or 0,
            name=name,
            read_only=read_only,
            created_at=now,
        )
    )
    audit.record(session, "token-create", actor=actor, user=user.email, token=name, read_only=read_only)
    return Made(secret, name, user.email, read_only)


def listing(session: Session) -> list[Listed]:
    """Every token, by user then name, live and revoked."""
    rows = session.exec(
        select(ApiToken, User.email)
        .join(User, col(User.id) == ApiToken.user_id)
        .order_by(col(User.email_key), col(ApiToken.name))
    )
    return [
        Listed(t.name, email, t.read_only, t.created_at, t.last_used_at, t.revoked_at) for t, email in rows
    ]


def revoke(session: Session, email: str, *, name: str | None, actor: str, now: datetime) -> list[str]:
    """Revoke the user's live token ``name`` (None: every live token of theirs); the names revoked.

    NotFoundError if nothing live matches, so a typo is not mistaken for success.
    """
    user = users.get(session, email)
    query = select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
    if name is not None:
        query = query.where(ApiToken.name == name)
    found = list(session.exec(query.order_by(col(ApiToken.name))))
    if not found:
        what = f"no live token named {name!r}" if name is not None else "no live token"
        raise NotFoundError(f"{user.email} has {what}; `newsletter tokens list` shows them")
    for token in found:
        token.revoked_at = now
        session.add(token)
    names = [token.name for token in found]
    audit.record(session, "token-revoke", actor=actor, user=user.email, tokens=names)
    return names


def authenticate(
    session: Session, settings: Settings, secret: str, *, now: datetime
) -> tuple[Actor, int] | None:
    """The person a live token acts as (their Actor, through the token) and the token's id; None otherwise.

    Unknown, forged, revoked, or a user removed or deactivated: None, all alike.
    """
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == digest(secret))).one_or_none()
    if token is None or token.revoked_at is not None:
        return None
    actor = users.load_actor(session, settings, token.user_id)
    if actor is None or not actor.active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        session.exec(update(ApiToken).where(col(ApiToken.id) == token.id).values(last_used_at=now))
    return dataclasses.replace(actor, token=token.name, read_only=token.read_only), token.id or 0
