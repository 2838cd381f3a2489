"""Accounts: create or extend a user with a role, list them, remove them, load one as an Actor.

A user is one mailbox (the address folded like a subscriber's ``email_key``); ``add``
with a role and groups creates the user or gives them more grants, and never takes
one away. ``remove`` deletes the account with its grants, its sign-in links and its
sessions, so every browser it signed in is signed out at once. Each change writes an
audit row naming who made it (``cli:<login>`` or ``user:<email>``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, col, delete, func, select

from newsletter.accounts import passwords
from newsletter.accounts.permissions import Actor, GrantView
from newsletter.accounts.roles import role_named, site_roles
from newsletter.core import audit
from newsletter.core.errors import InputError, InvalidAddress, NotFoundError, StateError
from newsletter.core.models import (
    ApiIdempotency,
    ApiToken,
    Grant,
    Group,
    Notice,
    NotificationSetting,
    SignInToken,
    User,
    UserSession,
)
from newsletter.core.settings import Settings
from newsletter.core.site import get_group


def parse_email(text: str) -> tuple[str, str]:
    """The normalised address and its key (folded as subscribers' are); InvalidAddress if unusable.

    Written here rather than taken from ``audience/addresses.py``: accounts sit below
    the audience in the layers. Staff addresses need no display name or SMTPUTF8 policy
    of a list, only a valid, normalised mailbox.
    """
    if not text or not text.strip():
        raise InvalidAddress("the address is empty")
    try:
        valid = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(
            "'{email}' is not a usable address: {reason}", email=text.strip(), reason=str(exc)
        ) from None
    return valid.normalized, valid.normalized.casefold()


def find(session: Session, email: str) -> User | None:
    """The user with this address (however it is spelt), or None."""
    try:
        _, key = parse_email(email)
    except InvalidAddress:
        return None
    return session.exec(select(User).where(User.email_key == key)).one_or_none()


def get(session: Session, email: str) -> User:
    """The user with this address; a NotFoundError saying how to add one otherwise."""
    user = find(session, email)
    if user is None:
        raise NotFoundError(
            "no user '{email}'; add one with `newsletter users add EMAIL --role ROLE`", email=email.strip()
        )
    return user


@dataclass(frozen=True)
class Added:
    """What ``add`` did: whether it made the user, and the grants that are new."""

    email: str
    created: bool
    new_grants: tuple[str, ...]

    def __str__(self) -> str:
        verb = "added" if self.created else ("extended" if self.new_grants else "unchanged")
        given = ", ".join(self.new_grants) or "no new role"
        return f"{verb}: {self.email} ({given})"


def add(
    session: Session,
    settings: Settings,
    email: str,
    role: str,
    groups: Sequence[str] = (),
    *,
    actor: str,
    name: str | None = None,
) -> Added:
    """Create the user or extend their grants with ``role`` on ``groups`` (none for a site-wide role)."""
    chosen = role_named(settings, role)
    if chosen.site_wide and groups:
        raise InputError("role '{role}' applies to the whole site: leave out --group", role=role)
    if not chosen.site_wide and not groups:
        raise InputError("role '{role}' is given per group: name at least one --group SLUG", role=role)
    group_rows = [get_group(session, settings, slug) for slug in dict.fromkeys(groups)]
    normalized, key = parse_email(email)
    user = session.exec(select(User).where(User.email_key == key)).one_or_none()
    created = user is None
    if user is None:
        user = User(email=normalized, email_key=key, name=(name or "").strip())
        session.add(user)
        session.flush()
    elif name is not None:
        user.name = name.strip()
    user.active = True
    held = {(g.role, g.group_id) for g in session.exec(select(Grant).where(Grant.user_id == user.id))}
    new: list[str] = []
    targets: list[Group | None] = [*group_rows] or [None]
    for group in targets:
        group_id = group.id if group is not None else None
        if (role, group_id) not in held:
            session.add(Grant(user_id=user.id or 0, role=role, group_id=group_id))
            new.append(f"{role} of {group.slug}" if group is not None else role)
    audit.record(session, "user-add", actor=actor, user=user.email, created=created, grants=new)
    return Added(user.email, created, tuple(new))


@dataclass(frozen=True)
class Listed:
    """One user as ``users list`` shows them."""

    email: str
    name: str
    active: bool
    roles: list[dict[str, str | None]]
    password: bool
    sessions: int
    created_at: datetime
    last_sign_in_at: datetime | None


def listing(session: Session, now: datetime) -> list[Listed]:
    """Every user, by address, with their grants and how many live sessions they have."""
    slugs = {g.id: g.slug for g in session.exec(select(Group))}
    grants: dict[int, list[dict[str, str | None]]] = {}
    for grant in session.exec(select(Grant).order_by(col(Grant.role), col(Grant.group_id))):
        grants.setdefault(grant.user_id, []).append(
            {"role": grant.role, "group": slugs.get(grant.group_id) if grant.group_id else None}
        )
    live = dict(
        session.exec(
            select(UserSession.user_id, func.count())
            .where(col(UserSession.revoked_at).is_(None), col(UserSession.expires_at) > now)
            .group_by(col(UserSession.user_id))
        ).all()
    )
    return [
        Listed(
            email=u.email,
            name=u.name,
            active=u.active,
            roles=grants.get(u.id or 0, []),
            password=u.password_hash is not None,
            sessions=int(live.get(u.id or 0, 0)),
            created_at=u.created_at,
            last_sign_in_at=u.last_sign_in_at,
        )
        for u in session.exec(select(User).order_by(col(User.email_key)))
    ]


@dataclass(frozen=True)
class Person:
    """One user as the workspace's users page shows them: each grant with its id."""

    id: int
    email: str
    name: str
    active: bool
    grants: tuple[tuple[int, str, str | None], ...]
    last_sign_in_at: datetime | None


def people(session: Session, *, offset: int, limit: int) -> tuple[list[Person], int]:
    """A page of users by address, with their grants (id, role, group slug); and how many there are."""
    total = int(session.exec(select(func.count()).select_from(User)).one())
    page = list(session.exec(select(User).order_by(col(User.email_key)).offset(offset).limit(limit)))
    grants: dict[int, list[tuple[int, str, str | None]]] = {}
    rows = session.exec(
        select(Grant.id, Grant.user_id, Grant.role, Group.slug)
        .select_from(Grant)
        .join(Group, col(Group.id) == Grant.group_id, isouter=True)
        .where(col(Grant.user_id).in_([u.id for u in page]))
        .order_by(col(Grant.role), col(Group.slug))
    )
    for grant_id, user_id, role, slug in rows:
        grants.setdefault(user_id, []).append((grant_id or 0, role, slug))
    found = [
        Person(u.id or 0, u.email, u.name, u.active, tuple(grants.get(u.id or 0, [])), u.last_sign_in_at)
        for u in page
    ]
    return found, total


def remove(session: Session, email: str, *, actor: str, settings: Settings | None = None) -> int:
    """Delete the user, their grants, sign-in links, sessions and API tokens; the number of sessions ended.

    Given the ``settings``, it refuses (StateError) to remove the site's last admin, as the
    workspace does; the command line may (``users add --role admin`` makes a new one).
    """
    user = get(session, email)
    if settings is not None:
        _keep_an_admin(session, settings, user.id or 0, leaving=None)
    ended = len(session.exec(select(UserSession.id).where(UserSession.user_id == user.id)).all())
    # Deleted explicitly, not left to ON DELETE CASCADE: SQLite honours it only with
    # foreign keys on, and the sessions must be gone whatever the engine.
    session.exec(delete(UserSession).where(col(UserSession.user_id) == user.id))
    session.exec(delete(SignInToken).where(col(SignInToken.user_id) == user.id))
    tokens = select(ApiToken.id).where(col(ApiToken.user_id) == user.id)
    session.exec(delete(ApiIdempotency).where(col(ApiIdempotency.token_id).in_(tokens)))
    session.exec(delete(ApiToken).where(col(ApiToken.user_id) == user.id))
    session.exec(delete(Grant).where(col(Grant.user_id) == user.id))
    session.exec(delete(Notice).where(col(Notice.user_id) == user.id))
    session.exec(delete(NotificationSetting).where(col(NotificationSetting.user_id) == user.id))
    session.delete(user)
    audit.record(session, "user-remove", actor=actor, user=user.email, sessions=ended)
    return ended


def grant_of(session: Session, user_id: int, grant_id: int) -> Grant:
    """The user's grant with this id; NotFoundError if it is not theirs (or was removed)."""
    grant = session.get(Grant, grant_id)
    if grant is None or grant.user_id != user_id:
        raise NotFoundError("that role was already taken away; reload the page")
    return grant


def revoke(session: Session, settings: Settings, user_id: int, grant_id: int, *, actor: str) -> str:
    """Take one grant away from a user; what it was (``editor of uk``).

    The site keeps an admin: taking away the last grant that lets someone manage users
    is refused (StateError), whoever asks.
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError("no such user")
    grant = grant_of(session, user_id, grant_id)
    _keep_an_admin(session, settings, user_id, leaving=grant_id)
    slug = session.get(Group, grant.group_id).slug if grant.group_id else None  # type: ignore[union-attr]
    described = f"{grant.role} of {slug}" if slug else grant.role
    session.delete(grant)
    audit.record(session, "user-revoke", actor=actor, user=user.email, grant=described)
    return described


def _managers(session: Session, settings: Settings) -> list[tuple[int, int]]:
    """(user id, grant id) of every active user's site-wide grant that lets them manage users."""
    roles = site_roles(settings)
    managing = [name for name, role in roles.items() if "users.manage" in role.permissions]
    rows = session.exec(
        select(Grant.user_id, Grant.id)
        .join(User, col(User.id) == Grant.user_id)
        .where(col(Grant.group_id).is_(None), col(Grant.role).in_(managing), col(User.active))
    ).all()
    return [(user_id, grant_id or 0) for user_id, grant_id in rows]


def _keep_an_admin(session: Session, settings: Settings, user_id: int, *, leaving: int | None) -> None:
    """Refuse a change that leaves nobody to manage users: losing grant ``leaving``, or (None) the user."""
    managers = _managers(session, settings)
    left = [m for m in managers if (m[1] != leaving if leaving is not None else m[0] != user_id)]
    if managers and not left:
        raise StateError(
            "this is the site's last admin: give someone else the admin role first, "
            "so that somebody can still manage users"
        )


def set_password(session: Session, email: str, password: str | None, *, actor: str) -> None:
    """Set (or with None, clear) the user's password; the hash only is kept."""
    user = get(session, email)
    user.password_hash = passwords.hash_password(password) if password is not None else None
    session.add(user)
    audit.record(session, "user-password", actor=actor, user=user.email, cleared=password is None)


def load_actor(session: Session, settings: Settings, user_id: int) -> Actor | None:
    """The user as the permission check sees them, or None if there is no such user."""
    user = session.get(User, user_id)
    if user is None:
        return None
    rows = session.exec(
        select(Grant.role, Group.slug)
        .select_from(Grant)
        .join(Group, col(Group.id) == Grant.group_id, isouter=True)
        .where(Grant.user_id == user_id)
    ).all()
    return Actor(
        user_id=user_id,
        email=user.email,
        name=user.name,
        active=user.active,
        grants=tuple(GrantView(role, slug) for role, slug in rows),
        roles=site_roles(settings),
        # What they wrote through an API token is theirs too (``pool/review.py``'s ``own``).
        aliases=tuple(
            audit.token_actor(name)
            for name in session.exec(select(ApiToken.name).where(ApiToken.user_id == user_id))
        ),
    )
