"""Server-side sessions: a random id in the browser's cookie, its SHA-256 in the database.

A session ends when it has not been used for ``[accounts] session_idle_minutes``, when
its user signs out (this browser) or signs out everywhere (every browser), and when the
user is removed. Nothing but the id's hash is stored, so a copy of the database signs
nobody in. Each session keeps the browser's user agent and address, for the user's
list of where they are signed in.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select, update

from newsletter.core.models import UserSession

# A session's last use is written at most this often (not on every page).
TOUCH_EVERY = timedelta(seconds=60)


def new_secret() -> str:
    """A random secret for a cookie or a link: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the database keeps of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def start(
    session: Session,
    user_id: int,
    *,
    now: datetime,
    idle: timedelta,
    user_agent: str,
    ip: str | None,
    replacing: str | None = None,
) -> str:
    """A new session for the user; the secret for the cookie (only its hash is stored).

    ``replacing`` is the browser's previous session cookie, if it had one: that session
    ends, so signing in again (as someone else, on a shared computer) leaves none behind.
    """
    if replacing:
        session.exec(
            update(UserSession)
            .where(col(UserSession.session_hash) == digest(replacing), col(UserSession.revoked_at).is_(None))
            .values(revoked_at=now)
        )
    secret = new_secret()
    session.add(
        UserSession(
            session_hash=digest(secret),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + idle,
            user_agent=user_agent[:200],
            ip=ip[:45] if ip else None,
        )
    )
    return secret


def resume(session: Session, secret: str, *, now: datetime, idle: timedelta) -> tuple[int, int] | None:
    """(user id, session id) of the cookie's live session, its idle time renewed; None if it ended."""
    row = session.exec(select(UserSession).where(UserSession.session_hash == digest(secret))).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at, row.expires_at = now, now + idle
        session.add(row)
    return row.user_id, row.id or 0


def end(session: Session, session_id: int, *, now: datetime) -> None:
    """Revoke one session (this browser signs out)."""
    session.exec(
        update(UserSession)
        .where(col(UserSession.id) == session_id, col(UserSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def end_all(session: Session, user_id: int, *, now: datetime) -> int:
    """Revoke every live session of the user (sign out everywhere); how many were live."""
    result = session.exec(
        update(UserSession)
        .where(
            col(UserSession.user_id) == user_id,
            col(UserSession.revoked_at).is_(None),
            col(UserSession.expires_at) > now,
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Seen:
    """One live session as its user sees it in the list."""

    id: int
    created_at: datetime
    last_seen_at: datetime
    user_agent: str
    ip: str | None


def live(session: Session, user_id: int, *, now: datetime) -> list[Seen]:
    """The user's live sessions, most recently used first."""
    rows = session.exec(
        select(UserSession)
        .where(
            UserSession.user_id == user_id,
            col(UserSession.revoked_at).is_(None),
            col(UserSession.expires_at) > now,
        )
        .order_by(col(UserSession.last_seen_at).desc())
    )
    return [Seen(r.id or 0, r.created_at, r.last_seen_at, r.user_agent, r.ip) for r in rows]
