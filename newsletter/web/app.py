"""The Starlette application behind ``newsletter serve``.

The subscriber pages live in ``web/public/``; every response, of every page, goes
through :class:`~newsletter.web.security.SecurityHeaders`. Forwarded headers are
believed only from the proxies in ``[web] trusted_proxies``.
"""

from starlette.applications import Starlette

from newsletter.core.site import Site
from newsletter.web import public
from newsletter.web.pages import Pages
from newsletter.web.security import RateLimits, SecurityHeaders, trusting_proxies


def create_app(site: Site, *, limits: RateLimits | None = None) -> SecurityHeaders:
    """The ASGI application, with security headers on every response.

    It sends no email: sign-ups queue their confirmation, which ``newsletter worker``,
    the daemon or ``run-due`` send (``delivery/confirmations.py``).
    """
    settings = site.settings
    pages = Pages(settings)
    routes = public.routes(site, pages, limits or RateLimits())
    app = trusting_proxies(Starlette(routes=routes), settings.web.trusted_proxies)
    return SecurityHeaders(app, hsts=settings.site.base_url.startswith("https://"))
