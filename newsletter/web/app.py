"""The Starlette application behind ``newsletter serve``.

The subscriber pages live in ``web/public/``, the editors' workspace in ``web/admin/``;
every response, of every page, goes through :class:`~newsletter.web.security.SecurityHeaders`.
Forwarded headers are believed only from the proxies in ``[web] trusted_proxies``.
"""

import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import event
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from newsletter.core.db import POOL_SIZE, make_engine
from newsletter.core.errors import DatabaseError
from newsletter.core.i18n import translations
from newsletter.core.models import utcnow
from newsletter.core.site import Site
from newsletter.delivery.transports import Transport, open_transport
from newsletter.web import admin, api, health, public, static
from newsletter.web.admin.sending import Sender
from newsletter.web.admission import RETRY_AFTER, Admission
from newsletter.web.pages import Pages
from newsletter.web.ratelimit import open_counter
from newsletter.web.security import RateLimits, Receive, Scope, SecurityHeaders, Send, trusting_proxies

PROCESSES_VARIABLE = "NEWSLETTER_SERVE_PROCESSES"
log = logging.getLogger(__name__)


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
    ``serve`` processes share the work (several need a shared store). The JSON API
    (``web/api/``) counts its tokens' requests there too.
    """
    settings = site.settings
    pages = Pages(settings)
    if limits is None or sign_in_limits is None:
        counter = open_counter(settings.web.rate_limit_store, site.engine, processes=processes)
        limits = limits or RateLimits(name="sign-up", counter=counter)
        sign_in_limits = sign_in_limits or RateLimits(name="sign-in", counter=counter)
    visitors = _impatient(site)
    transport_factory = sign_in_transport or (lambda: open_transport(settings))
    # One background sender for the workspace's Send button and the API's send.
    sender = Sender(site, transport_factory)
    routes = [
        *health.routes(site),
        *public.routes(visitors, pages, limits),
        *admin.routes(
            site,
            pages,
            transport_factory,
            sign_in_limits,
            clock,
            sender,
        ),
        # The JSON API counts each token's requests on the sign-in form's store.
        *api.routes(site, sender, sign_in_limits.counter, clock),
        *static.routes(),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The requests' database work runs on anyio's threads (40 at once by default):
        # no more at once than the connections the pool keeps (core/db.py POOL_SIZE).
        anyio.to_thread.current_default_thread_limiter().total_tokens = POOL_SIZE
        yield
        if visitors is not site:
            visitors.engine.dispose()

    def busy_page(request: Request) -> Response:
        language = pages.language(request, settings.site.language)
        gettext = translations(language).gettext
        response = pages.message(
            request,
            gettext("Please try again in a moment"),
            gettext("The site is busy just now and nothing was changed. Please try again in a few seconds."),
            language=language,
            status=503,
        )
        response.headers["retry-after"] = str(RETRY_AFTER)
        return response

    async def busy(request: Request, exc: Exception) -> Response:
        # The database did not answer in time (or refused the change): the request's
        # transaction was rolled back, so the visitor is told to try again and nothing
        # of theirs was kept.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return busy_page(request)

    async def turned_away(scope: Scope, receive: Receive, send: Send) -> None:
        # Nothing of the request was read or done: it waited too long for its turn.
        await busy_page(Request(scope))(scope, receive, send)

    # A request's turn: as many at work as the pool has connections, and as many again
    # on the event loop (reading forms, rendering pages) while those wait for the database.
    admission = Middleware(
        Admission, limit=2 * POOL_SIZE, wait=settings.web.request_wait_seconds, busy=turned_away
    )
    starlette = Starlette(
        routes=routes, middleware=[admission], exception_handlers={DatabaseError: busy}, lifespan=lifespan
    )
    app = trusting_proxies(starlette, settings.web.trusted_proxies)
    return SecurityHeaders(app, hsts=settings.site.base_url.startswith("https://"))


def _impatient(site: Site) -> Site:
    """The site for the subscriber pages: on SQLite, a connection that waits for the write
    lock at most ``[web] database_wait_seconds`` (the commands wait 30 s), so that a busy
    moment is a quick 503 rather than a visitor's timeout. Other databases: the site itself.
    """
    if site.engine.dialect.name != "sqlite":
        return site
    engine = make_engine(site.settings.database_url)
    wait_ms = int(site.settings.web.database_wait_seconds * 1000)

    def wait_less(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={wait_ms}")
        cursor.close()

    event.listen(engine, "connect", wait_less)
    return dataclasses.replace(site, engine=engine)


def app_from_environment() -> SecurityHeaders:
    """The app for one of ``serve --workers N``'s processes, from the settings ``serve`` resolved.

    ``serve`` puts the site folder, the database URL and the transport it resolved (flags
    included) in the environment of the processes it starts, and how many there are.
    """
    from newsletter.core.settings import load_settings

    settings = load_settings(os.environ["NEWSLETTER_SITE"])
    return create_app(Site.open(settings), processes=int(os.environ.get(PROCESSES_VARIABLE, "1")))
