"""The JSON API's machinery: a route is a small typed declaration, the rest is done once here.

An :class:`Endpoint` names its method, path, permission, and the pydantic models of
its query, body and answer; the handler gets a :class:`Call` and returns a model (or,
for a CSV or an email preview, a Response). Every request then goes the same way:

1. the bearer token (missing, forged, revoked: 401 ``unauthorized``);
2. the token's rate limit (429 ``rate_limited``, with Retry-After);
3. the one permission check (``accounts.permissions``): a group the person has no
   permission on is 404 ``not_found``, a forbidden act 403 ``forbidden``;
4. a read-only token that writes: 403 ``read_only``;
5. the query and body, validated by their models (422 ``invalid_request``);
6. an ``Idempotency-Key`` on a POST that creates something (``idempotency.py``);
7. the handler, in a worker thread; the library's errors become JSON with a stable
   ``code`` (:data:`ERRORS`).

The OpenAPI document (``openapi.py``) is built from the same declarations, so it
cannot drift from what the routes do.
"""

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.accounts import apitokens
from newsletter.accounts.permissions import Actor, can, require, require_visible
from newsletter.core.errors import (
    ApiRefusal,
    DatabaseError,
    DeliveryError,
    FeedError,
    FetchError,
    Forbidden,
    ImportFileError,
    InputError,
    LeaseHeld,
    NewsletterError,
    NotFoundError,
    NothingToBuild,
    RenderError,
    SecondPersonRequired,
    StaleRecord,
    StateError,
    TransitionError,
)
from newsletter.core.site import Site
from newsletter.web.ratelimit import Counter

if TYPE_CHECKING:
    from newsletter.web.api.idempotency import IdempotencyStore

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
# A JSON body larger than this is refused unread (413); a CSV import has its own cap.
MAX_BODY = 1024 * 1024
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


# The library's errors as the API answers them: most specific first.
ERRORS: tuple[tuple[type[NewsletterError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (Forbidden, 403, "forbidden"),
    (ImportFileError, 422, "invalid_file"),
    (InputError, 422, "invalid_input"),
    (StaleRecord, 409, "stale"),
    (SecondPersonRequired, 409, "second_person_required"),
    (LeaseHeld, 409, "already_sending"),
    (TransitionError, 409, "invalid_transition"),
    (StateError, 409, "conflict"),
    (NothingToBuild, 409, "nothing_to_build"),
    (RenderError, 422, "render_failed"),
    (DeliveryError, 502, "delivery_failed"),
    (FetchError, 502, "fetch_failed"),
    (FeedError, 502, "fetch_failed"),
    (DatabaseError, 503, "busy"),
)
# Every code an answer may carry, for the OpenAPI document and docs/api.md.
CODES = sorted(
    {code for _, _, code in ERRORS}
    | {"unauthorized", "rate_limited", "read_only", "invalid_request", "payload_too_large"}
    | {"idempotency_key_reused", "idempotency_in_progress", "internal"}
)


def translate(exc: NewsletterError) -> ApiRefusal:
    for kind, status, code in ERRORS:
        if isinstance(exc, kind):
            headers = {"retry-after": "5"} if status == 503 else None
            return ApiRefusal(status, code, str(exc), headers)
    return ApiRefusal(500, "internal", str(exc))


def error_response(error: ApiRefusal) -> JSONResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    return JSONResponse(body, status_code=error.http_status, headers=error.headers)


# -- what a route declares -----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: who, where, and what they sent (already validated)."""

    actor: Actor
    token_id: int
    site: Site
    params: Mapping[str, str]
    query: Any
    body: Any
    raw: bytes
    request: Request

    @property
    def slug(self) -> str:
        return self.params["slug"]

    def number(self, name: str) -> int:
        """A numeric path parameter (an item's or edition's id); anything else is 404."""
        text = self.params[name]
        if not text.isdigit() or len(text) > 18:
            raise NotFoundError(f"no such {name.removesuffix('_id')} {text!r}")
        return int(text)


Handler = Callable[[Call], BaseModel | Response]


@dataclass(frozen=True)
class Endpoint:
    """One API route: everything the router and the OpenAPI document need to know about it.

    ``permission`` is asked on the path's group (``{slug}``) or, without one, on the site;
    a tuple means any one of them will do (to read a group's editions, say). ``creates``
    marks a POST that makes something: it honours ``Idempotency-Key``. ``body`` is a
    pydantic model for a JSON body, or the media type of a raw one (a CSV upload).
    """

    method: str
    path: str
    name: str
    summary: str
    permission: str | tuple[str, ...]
    handler: Handler
    response: type[BaseModel] | str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | str | None = None
    status: int = 200
    creates: bool = False
    tag: str = ""
    errors: tuple[int, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    @property
    def permissions(self) -> tuple[str, ...]:
        return (self.permission,) if isinstance(self.permission, str) else self.permission


# -- cursors -------------------------------------------------------------------------------


def encode_cursor(position: Mapping[str, Any]) -> str:
    """An opaque cursor for the next page (a position, never personal data)."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None, keys: Mapping[str, type]) -> dict[str, Any] | None:
    """The position a cursor names; a cursor this API did not make is 422 ``invalid_request``."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        found = json.loads(raw)
    except (binascii.Error, ValueError):
        found = None
    if (
        not isinstance(found, dict)
        or set(found) != set(keys)
        or not all(type(found[k]) is kind for k, kind in keys.items())
        or any(isinstance(v, int) and not 0 <= v < 2**62 for v in found.values())
    ):
        raise ApiRefusal(
            422, "invalid_request", "the cursor is not one this API gave; start from the first page"
        )
    return found


# -- the router ----------------------------------------------------------------------------


class Api:
    """Turns declarations into Starlette routes that authenticate, check, validate and answer."""

    def __init__(
        self,
        site: Site,
        counter: Counter,
        clock: Callable[[], datetime],
        idempotency: "IdempotencyStore",
    ) -> None:
        self.site = site
        self.settings = site.settings
        self.counter = counter
        self.clock = clock
        self.idempotency = idempotency

    def route(self, endpoint: Endpoint) -> Route:
        async def serve(request: Request) -> Response:
            try:
                return await self._answer(endpoint, request)
            except ApiRefusal as error:
                return error_response(error)

        return Route(PREFIX + endpoint.path, serve, methods=[endpoint.method], name=endpoint.name)

    async def _answer(self, endpoint: Endpoint, request: Request) -> Response:
        actor, token_id = await self._authenticate(request)
        # In a thread: the counter may be the database's or Redis's.
        limit = self.settings.web.api_requests_per_hour
        try:
            allowed = await run_in_threadpool(self.counter.hit, "api:token", str(token_id), limit)
        except Exception as exc:  # the store (database, Redis) did not answer: try again
            log.warning("rate-limit store: %s", exc)
            raise ApiRefusal(503, "busy", "the server is busy; try again", {"retry-after": "5"}) from None
        if not allowed:
            raise ApiRefusal(
                429,
                "rate_limited",
                "this token made too many requests this hour; try again later",
                {"retry-after": "60"},
            )
        params = {k: str(v) for k, v in request.path_params.items()}
        self._check(endpoint, actor, params)
        query = self._query(endpoint, request)
        raw, body = await self._body(endpoint, request)
        call = Call(actor, token_id, self.site, params, query, body, raw, request)
        key = request.headers.get("idempotency-key")
        if endpoint.creates and key is not None:
            return await self.idempotency.once(call, key, lambda: self._run(endpoint, call))
        return await self._run(endpoint, call)

    async def _authenticate(self, request: Request) -> tuple[Actor, int]:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiRefusal(
                401,
                "unauthorized",
                "send a token: Authorization: Bearer <token>",
                {"www-authenticate": 'Bearer realm="newsletter"'},
            )

        def find() -> tuple[Actor, int] | None:
            with self.site.transaction() as session:
                return apitokens.authenticate(session, self.settings, secret.strip(), now=self.clock())

        try:
            found = await run_in_threadpool(find)
        except DatabaseError as exc:
            raise translate(exc) from None
        if found is None:
            raise ApiRefusal(
                401,
                "unauthorized",
                "this token is unknown or was revoked",
                {"www-authenticate": 'Bearer realm="newsletter", error="invalid_token"'},
            )
        return found

    def _check(self, endpoint: Endpoint, actor: Actor, params: Mapping[str, str]) -> None:
        """The permission (404 for a group the person cannot see, else 403), then read-only."""
        try:
            slug = params.get("slug")
            if slug is not None:
                require_visible(actor, slug)
                if slug not in self.settings.groups:
                    raise NotFoundError(f"no group {slug!r}")
                if endpoint.permissions and not any(can(actor, p, slug) for p in endpoint.permissions):
                    require(actor, endpoint.permissions[0], slug)
            elif endpoint.permissions and not any(can(actor, p, None) for p in endpoint.permissions):
                require(actor, endpoint.permissions[0], None)
            # No permission declared: any live token may ask (the list of its own groups).
        except NewsletterError as exc:
            raise translate(exc) from None
        if endpoint.writes and actor.read_only:
            raise ApiRefusal(
                403, "read_only", f"token {actor.token!r} is read-only; it cannot change anything"
            )

    def _query(self, endpoint: Endpoint, request: Request) -> Any:
        if endpoint.query is None:
            return None
        try:
            return endpoint.query.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise ApiRefusal(422, "invalid_request", _explain(exc)) from None

    async def _body(self, endpoint: Endpoint, request: Request) -> tuple[bytes, Any]:
        if endpoint.body is None:
            return b"", None
        limit = endpoint.extra.get("max_body", MAX_BODY)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiRefusal(
                413, "payload_too_large", f"the body is larger than {limit} bytes; nothing was read"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiRefusal(
                    413, "payload_too_large", f"the body is larger than {limit} bytes; nothing was read"
                )
            chunks.append(chunk)
        raw = b"".join(chunks)
        if isinstance(endpoint.body, str):
            return raw, None
        try:
            return raw, endpoint.body.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise ApiRefusal(422, "invalid_request", _explain(exc)) from None

    async def _run(self, endpoint: Endpoint, call: Call) -> Response:
        try:
            answer = await run_in_threadpool(endpoint.handler, call)
        except ApiRefusal:
            raise
        except NewsletterError as exc:
            error = translate(exc)
            if error.http_status >= 500:
                log.warning("%s %s: %s", endpoint.method, call.request.url.path, exc)
            raise error from None
        except Exception:
            log.exception("%s %s failed", endpoint.method, call.request.url.path)
            raise ApiRefusal(500, "internal", "the server failed; the error is in its log") from None
        if isinstance(answer, Response):
            return answer
        return JSONResponse(answer.model_dump(mode="json"), status_code=endpoint.status)


def _explain(exc: ValidationError) -> str:
    """A pydantic error in one line: each field and what is wrong with it."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "the body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)
