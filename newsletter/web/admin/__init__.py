"""The editors' workspace under ``/admin/``: sign-in, sessions, and the signed-in pages.

GET  /admin/sign-in  POST              the address form; POST mails a one-time link   (signin.py)
POST /admin/password-sign-in           sign in with an address and password (if one is set)
GET  /admin/sign-in/{token}  POST      a page with one button; only its POST uses the link
POST /admin/sign-out                   end this browser's session
POST /admin/sign-out-everywhere        end every session of the user
GET  /admin/                           the dashboard: the user's groups               (dashboard.py)
GET  /admin/account                    where the user is signed in
GET  /admin/groups/{slug}/             one group's workspace (404 without a permission on it)
GET  /admin/groups/{slug}/items...     the group's items: queue, new item, preview, item page (items.py)
GET  /admin/groups/{slug}/editions...  its editions: build, change, preview, send (editions.py, sending.py)
GET  /admin/groups/{slug}/subscribers  members: list, add, remove, import, export  (subscribers.py)
GET  /admin/groups/{slug}/webhooks   the webhooks naming the group, and their deliveries (webhooks.py)
/admin/sources, schedules, users, webhooks, notifications: the site-wide pages (sitewide.py);
                                       admins add, change and remove sources and schedules

Every page but the sign-in ones needs a session (anonymous: 303 to the sign-in page),
and every page that acts for the person asks ``accounts.permissions`` (``auth.py``).
"""

from collections.abc import Callable
from datetime import datetime

from starlette.routing import BaseRoute

from newsletter.core.site import Site
from newsletter.delivery.transports import Transport
from newsletter.web.admin.auth import Workspace
from newsletter.web.admin.dashboard import Dashboard
from newsletter.web.admin.items import Items
from newsletter.web.admin.sending import Sender, editions_routes
from newsletter.web.admin.signin import SignIn
from newsletter.web.admin.sitewide import site_wide_pages
from newsletter.web.admin.subscribers import Subscribers
from newsletter.web.pages import Pages
from newsletter.web.security import RateLimits


def routes(
    site: Site,
    pages: Pages,
    transport_factory: Callable[[], Transport],
    limits: RateLimits,
    clock: Callable[[], datetime],
    sender: Sender | None = None,
) -> list[BaseRoute]:
    """The workspace's routes; sign-in emails, test copies and editions go out by ``transport_factory``.

    ``sender`` sends editions in the background (the JSON API shares it, so a send started
    there shows on the progress page); by default one of the workspace's own.
    """
    workspace = Workspace(site, pages, clock)
    return [
        *SignIn(workspace, transport_factory, limits).routes(),
        *Dashboard(workspace).routes(),
        *Items(workspace).routes(),
        *editions_routes(workspace, transport_factory, sender),
        *Subscribers(workspace).routes(),
        *site_wide_pages(workspace, transport_factory),
    ]
