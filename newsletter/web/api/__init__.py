"""The JSON API under ``/api/v1/``: the workspace for scripts, with bearer tokens (docs/api.md).

GET /api/v1/openapi.json                  the OpenAPI document, built from the routes (no token needed)
/api/...                                  anything else: a JSON 404 ``not_found``
/api/v1/groups                            the groups the token's user sees            (items.py)
/api/v1/groups/{slug}/items...            list, propose, read, edit, review, target   (items.py)
/api/v1/groups/{slug}/subscribers...      list, add, remove, import, export           (subscribers.py)
/api/v1/groups/{slug}/editions...         list, build, read, preview, approve, send   (editions.py)
/api/v1/sources...                        health, fetch now                           (sources.py)

Each route is an :class:`~newsletter.web.api.framework.Endpoint` declaration; the
framework authenticates the token, counts its rate limit, asks ``accounts.permissions``
(the pages' check) and answers errors as JSON with a stable code.
"""

from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.core.errors import ApiRefusal
from newsletter.core.site import Site
from newsletter.editions.render import Renderer
from newsletter.web.admin.sending import Sender
from newsletter.web.api import items, sources, subscribers
from newsletter.web.api.editions import Editions
from newsletter.web.api.framework import PREFIX, Api, Endpoint, error_response
from newsletter.web.api.idempotency import IdempotencyStore
from newsletter.web.api.openapi import document
from newsletter.web.ratelimit import Counter

ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE")


def endpoints(site: Site, sender: Sender) -> list[Endpoint]:
    """Every route of the API, in the order the document lists them; editions go out by ``sender``."""
    editions = Editions(Renderer(site.settings), sender)
    return [*items.ENDPOINTS, *subscribers.ENDPOINTS, *editions.endpoints(), *sources.ENDPOINTS]


def _version() -> str:
    try:
        return version("newsletter")
    except PackageNotFoundError:
        return "0"


def routes(site: Site, sender: Sender, counter: Counter, clock: Callable[[], datetime]) -> list[BaseRoute]:
    """The API's routes, and its OpenAPI document made once from the same declarations.

    ``sender`` is the workspace's background sender: an edition sent through the API goes
    the way the Send button's does, and shows on the same progress page.
    """
    declared = endpoints(site, sender)
    api = Api(site, counter, clock, IdempotencyStore(site, clock))
    described = document(declared, version=_version())

    async def openapi(request: Request) -> Response:
        return JSONResponse(described)

    async def unknown(request: Request) -> Response:
        # Any other path under /api: a JSON 404 too, so scripts parse every answer alike.
        return error_response(
            ApiRefusal(404, "not_found", "there is no such API route; see /api/v1/openapi.json")
        )

    return [
        Route(PREFIX + "/openapi.json", openapi, methods=["GET"]),
        *(api.route(e) for e in declared),
        Route("/api/{rest:path}", unknown, methods=list(ANY_METHOD)),
    ]
