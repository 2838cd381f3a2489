"""The one permission check: may this actor do this act on this group?

Every page, API route and CLI path that acts for a person asks :func:`can` (or
:func:`require`, which raises) with an :class:`Actor` loaded once per request from the
user's grants (``users.actor``). The answer depends only on data: the user's grants
and the roles they name (``roles.py``).

* A site-wide grant (admin) gives its permissions on every group.
* A group grant gives its role's per-group permissions on that group, and its
  site-wide read permissions (an editor may see the sources) on the site's things.
* A group on which the actor has no permission at all is invisible: :func:`require`
  raises :class:`NotFoundError`, as for a group that does not exist, so a refusal
  tells nobody that the group is there; a visible group's forbidden act raises
  :class:`Forbidden`. Pages answer 404 and 403.
* An inactive user can do nothing.

Each refusal is logged with :func:`explain`'s reason, so an operator can see why.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.accounts.roles import Role
from newsletter.core.audit import token_actor, user_actor
from newsletter.core.errors import Forbidden, NotFoundError
from newsletter.core.permissions import PERMISSIONS, SITE_PERMISSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrantView:
    """One grant as the check sees it: a role, on a group (slug) or site-wide (None)."""

    role: str
    group: str | None


@dataclass(frozen=True)
class Actor:
    """A signed-in person (or a CLI user acting as one), with everything the check needs."""

    user_id: int
    email: str
    name: str
    active: bool
    grants: tuple[GrantView, ...]
    roles: Mapping[str, Role]
    # The API token the person acts through (its name), or None in the workspace and CLI.
    token: str | None = None
    # A read-only token: the API refuses its writes (403) whatever the person's roles.
    read_only: bool = False
    # The labels of the person's API tokens (``token:NAME``): what they wrote through them is theirs.
    aliases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How the audit log names this person: ``user:<email>``, or ``token:<name>`` through a token."""
        return token_actor(self.token) if self.token is not None else user_actor(self.email)

    @property
    def identities(self) -> frozenset[str]:
        """Every label this person has written under (themselves and their tokens): what is "their own"."""
        return frozenset({user_actor(self.email), self.label, *self.aliases})

    def _permissions(self, grant: GrantView) -> frozenset[str]:
        role = self.roles.get(grant.role)
        return role.permissions if role is not None else frozenset()

    def permissions_on(self, group: str | None) -> frozenset[str]:
        """Every permission the actor holds on ``group`` (None: on the site's own things)."""
        if not self.active:
            return frozenset()
        held: set[str] = set()
        for grant in self.grants:
            permissions = self._permissions(grant)
            if grant.group is None:
                held |= permissions
            elif group is None:
                held |= permissions & SITE_PERMISSIONS.keys()
            elif grant.group == group:
                held |= permissions - SITE_PERMISSIONS.keys()
        if group is None:
            return frozenset(held & SITE_PERMISSIONS.keys())
        return frozenset(held - SITE_PERMISSIONS.keys())


def can(actor: Actor | None, permission: str, group: str | None) -> bool:
    """Whether ``actor`` may do ``permission`` on ``group`` (None: a site-wide thing)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return actor is not None and permission in actor.permissions_on(group)


def visible(actor: Actor | None, group: str) -> bool:
    """Whether the actor holds any permission on ``group`` (else it does not exist for them)."""
    return actor is not None and bool(actor.permissions_on(group))


def visible_groups(actor: Actor | None, groups: list[str]) -> list[str]:
    """The groups of ``groups``, in order, that the actor may see: what lists show them."""
    return [group for group in groups if visible(actor, group)]


def explain(actor: Actor | None, permission: str, group: str | None) -> str:
    """Why :func:`can` answers as it does, in one line for the log."""
    where = f"group {group!r}" if group else "the site"
    if actor is None:
        return f"{permission} on {where}: refused, nobody is signed in"
    who = actor.label
    if not actor.active:
        return f"{permission} on {where}: refused, {who} is deactivated"
    granting = [
        f"{g.role}@{g.group or 'site'}"
        for g in actor.grants
        if permission in actor._permissions(g) and (g.group in (None, group) or group is None)
    ]
    if can(actor, permission, group):
        return f"{permission} on {where}: allowed for {who} by {', '.join(granting)}"
    held = ", ".join(f"{g.role}@{g.group or 'site'}" for g in actor.grants) or "no role"
    return f"{permission} on {where}: refused, {who} has {held}"


def require_visible(actor: Actor | None, group: str) -> None:
    """Return if the actor holds any permission on ``group``; NotFoundError (and a log line) otherwise."""
    if visible(actor, group):
        return
    who = actor.label if actor is not None else "nobody signed in"
    log.info("permission: group %r is invisible to %s (no role on it)", group, who)
    raise NotFoundError(f"no group {group!r}")


def require(actor: Actor | None, permission: str, group: str | None) -> None:
    """Return if allowed; otherwise NotFoundError (invisible group) or Forbidden, and log why."""
    if can(actor, permission, group):
        return
    log.info("permission %s", explain(actor, permission, group))
    if group is not None and not visible(actor, group):
        raise NotFoundError(f"no group {group!r}")
    raise Forbidden(f"you may not do this ({permission}); ask an admin if you need to")
