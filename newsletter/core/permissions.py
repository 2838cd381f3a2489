"""The permission vocabulary and the built-in roles (docs: ../shared/WORKSPACE.md).

A permission names one kind of act; a role is a named set of permissions. The names
live here, below everything, so that ``newsletter.toml``'s ``[roles.NAME]`` tables can
be checked against them when the settings are read; ``accounts/roles.py`` turns the
built-in and the declared roles into what :func:`newsletter.accounts.permissions.can`
consults.

Per-group permissions apply to the group a grant names (or to every group, for a
site-wide grant); site-wide ones (sources, schedules, users) are about the site's own
things and are answered without a group.
"""

# Permission -> what it allows, in the words the workspace shows.
GROUP_PERMISSIONS = {
    "items.propose": "draft an item; see and edit one's own proposals until they are reviewed",
    "items.review": "edit, approve, reject and target any item of the group",
    "editions.edit": "build an edition, write its intro, order and drop items, send a test to oneself",
    "editions.approve": "approve an edition for sending",
    "editions.send": "send now, schedule, pause, resume or cancel an edition",
    "subscribers.read": "see the group's members",
    "subscribers.write": "add, remove and import the group's members",
    "subscribers.export": "export the group's members",
    "webhooks.read": "see the webhooks that name the group and their last deliveries",
}
SITE_PERMISSIONS = {
    "sources.read": "see the sources and their health",
    "sources.manage": "add, change and fetch the sources",
    "schedules.read": "see the schedules and their next runs",
    "schedules.manage": "change the schedules",
    "users.manage": "invite users, set their roles, remove them",
    "webhooks.site": "see every webhook and every delivery, whichever group it is about",
}
PERMISSIONS = {**GROUP_PERMISSIONS, **SITE_PERMISSIONS}

# The built-in roles: admin is granted site-wide, editor and contributor per group.
ADMIN, EDITOR, CONTRIBUTOR = "admin", "editor", "contributor"
BUILTIN_ROLES: dict[str, frozenset[str]] = {
    ADMIN: frozenset(PERMISSIONS),
    EDITOR: frozenset({*GROUP_PERMISSIONS, "sources.read", "schedules.read"}),
    CONTRIBUTOR: frozenset({"items.propose"}),
}
SITE_WIDE_ROLES = frozenset({ADMIN})
