"""The Starlette application behind ``newsletter serve``.

The subscriber pages live in ``web/public/``; every response, of every page, goes
through :class:`~newsletter.web.security.SecurityHeaders`.
"""

from collections.abc import Callable

from starlette.applications import Starlette

from newsletter.core.site import Site
from newsletter.delivery.transports import Transport
from newsletter.web import public
from newsletter.web.pages import Pages
from newsletter.web.security import RateLimits, SecurityHeaders


def create_app(
    site: Site, transport_factory: Callable[[], Transport], *, limits: RateLimits | None = None
) -> SecurityHeaders:
    """The ASGI application, with security headers on every response."""
    pages = Pages(site.settings)
    routes = public.routes(site, pages, transport_factory, limits or RateLimits())
    return SecurityHeaders(Starlette(routes=routes))
