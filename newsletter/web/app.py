"""The Starlette application behind ``newsletter serve``.

The subscriber pages live in ``web/public/``, the editors' workspace in ``web/admin/``;
every response, of every page, goes through :class:`~newsletter.web.security.SecurityHeaders`.
Forwarded headers are believed only from the proxies in ``[web] trusted_proxies``.
"""

from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette

from newsletter.core.models import utcnow
from newsletter.core.site import Site
from newsletter.delivery.transports import Transport, open_transport
from newsletter.web import admin, public, static
from newsletter.web.pages import Pages
from newsletter.web.security import RateLimits, SecurityHeaders, trusting_proxies


def create_app(
    site: Site,
    *,
    limits: RateLimits | None = None,
    sign_in_limits: RateLimits | None = None,
    sign_in_transport: Callable[[], Transport] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> SecurityHeaders:
    """The ASGI application, with security headers on every response.

    The subscriber pages send no email: sign-ups queue their confirmation, which
    ``newsletter worker``, the daemon or ``run-due`` send (``delivery/confirmations.py``).
    The workspace's sign-in links cannot wait for a queue (they last 15 minutes): they
    go out at once, after the page has answered, through ``sign_in_transport`` (by
    default the site's transport). ``sign_in_limits`` are the sign-in form's limits, kept
    apart from the sign-up form's; ``clock`` is the workspace's idea of now (tests move it).
    """
    settings = site.settings
    pages = Pages(settings)
    routes = [
        *public.routes(site, pages, limits or RateLimits()),
        *admin.routes(
            site,
            pages,
            sign_in_transport or (lambda: open_transport(settings)),
            sign_in_limits or RateLimits(),
            clock,
        ),
        *static.routes(),
    ]
    app = trusting_proxies(Starlette(routes=routes), settings.web.trusted_proxies)
    return SecurityHeaders(app, hsts=settings.site.base_url.startswith("https://"))
