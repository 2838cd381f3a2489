"""Roles: named sets of permissions, the three built in and the site's own.

The built-in ones (``core/permissions.py``) follow the table in WORKSPACE.md; a site
adds roles in ``newsletter.toml``::

    [roles.reviewer]
    permissions = ["items.propose", "items.review"]

A role is granted on a group, or site-wide when the role says so (``admin`` and any
role declared with ``site_wide = true``).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.core.errors import InputError
from newsletter.core.permissions import BUILTIN_ROLES, SITE_WIDE_ROLES
from newsletter.core.settings import Settings


@dataclass(frozen=True)
class Role:
    name: str
    permissions: frozenset[str]
    # Granted to the whole site (no group), rather than to one group at a time.
    site_wide: bool
    builtin: bool


def site_roles(settings: Settings) -> Mapping[str, Role]:
    """Every role the site knows by name: the built-in ones, then its own."""
    roles = {
        name: Role(name, permissions, name in SITE_WIDE_ROLES, True)
        for name, permissions in BUILTIN_ROLES.items()
    }
    for name, config in settings.roles.items():
        roles[name] = Role(name, frozenset(config.permissions), config.site_wide, False)
    return roles


def role_named(settings: Settings, name: str) -> Role:
    """The role called ``name``; an :class:`InputError` listing the known ones otherwise."""
    roles = site_roles(settings)
    try:
        return roles[name]
    except KeyError:
        raise InputError(f"no role {name!r} (known: {', '.join(sorted(roles))})") from None
