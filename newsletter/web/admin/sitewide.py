"""The site-wide pages (sources, schedules, users, webhooks) and notifications, as one list of routes."""

from collections.abc import Callable

from starlette.routing import Route

from newsletter.delivery.transports import Transport
from newsletter.web.admin.auth import Workspace
from newsletter.web.admin.notifications import Notifications
from newsletter.web.admin.schedules import Schedules
from newsletter.web.admin.sources import Sources
from newsletter.web.admin.users import Users
from newsletter.web.admin.webhooks import Webhooks


def site_wide_pages(workspace: Workspace, transport_factory: Callable[[], Transport]) -> list[Route]:
    """Their routes; invitations are mailed through ``transport_factory`` (the sign-in page's)."""
    return [
        *Sources(workspace).routes(),
        *Schedules(workspace).routes(),
        *Users(workspace, transport_factory).routes(),
        *Notifications(workspace).routes(),
        *Webhooks(workspace).routes(),
    ]
