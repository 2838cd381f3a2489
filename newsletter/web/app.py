"""The Starlette application behind ``newsletter serve``.

The subscriber pages live in ``web/public/``, the editors' workspace in ``web/admin/``;
every response, of every page, goes through :class:`~newsletter.web.security.SecurityHeaders`.
Forwarded headers are believed only from the proxies in ``[web] trusted_proxies``.
"""

import os
from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette

from newsletter.core.models import utcnow
from newsletter.core.site import Site
from newsletter.delivery.transports import Transport, open_transport
from newsletter.web import admin, health, public, static
from newsletter.web.pages import Pages
from newsletter.web.ratelimit import open_counter
from newsletter.web.security import RateLimits, SecurityHeaders, trusting_proxies

PROCESSES_VARIABLE = "NEWSLETTER_SERVE_PROCESSES"


def create_app(
    site: Site,
    *,
    limits: RateLimits | None = None,
    sign_in_limits: RateLimits | None = None,
    sign_in_transport: Callable[[], Transport] | None = None,
    clock: Callable[[], datetime] = utcnow,
    processes: int = 1,
) -> SecurityHeaders:
    """The ASGI application, with security headers on every response.

    The subscriber pages send no email: sign-ups queue their confirmation, which
    ``newsletter worker``, the daemon or ``run-due`` send (``delivery/confirmations.py``).
    The workspace's sign-in links cannot wait for a queue (they last 15 minutes): they
    go out at once, after the page has answered, through ``sign_in_transport`` (by
    default the site's transport). ``sign_in_limits`` are the sign-in form's limits, kept
    apart from the sign-up form's; ``clock`` is the workspace's idea of now (tests move it).
    Both count on the store ``[web] rate_limit_store`` names; ``processes`` is how many
    ``serve`` processes share the work (several need a shared store).
    """
    settings = site.settings
    pages = Pages(settings)
    if limits is None or sign_in_limits is None:
        counter = open_counter(settings.web.rate_limit_store, site.engine, processes=processes)
        limits = limits or RateLimits(name="sign-up", counter=counter)
        sign_in_limits = sign_in_limits or RateLimits(name="sign-in", counter=counter)
    routes = [
        *health.routes(site),
        *public.routes(site, pages, limits),
        *admin.routes(
            site,
            pages,
            sign_in_transport or (lambda: open_transport(settings)),
            sign_in_limits,
            clock,
        ),
        *static.routes(),
    ]
    app = trusting_proxies(Starlette(routes=routes), settings.web.trusted_proxies)
    return SecurityHeaders(app, hsts=settings.site.base_url.startswith("https://"))


def app_from_environment() -> SecurityHeaders:
    """The app for one of ``serve --workers N``'s processes, from the settings ``serve`` resolved.

    ``serve`` puts the site folder, the database URL and the transport it resolved (flags
    included) in the environment of the processes it starts, and how many there are.
    """
    from newsletter.core.settings import load_settings

    settings = load_settings(os.environ["NEWSLETTER_SITE"])
    return create_app(Site.open(settings), processes=int(os.environ.get(PROCESSES_VARIABLE, "1")))
