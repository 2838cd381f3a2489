"""The Starlette application behind ``newsletter serve``.

Routes (every token is signed; nothing personal appears in a URL but the token):

    GET  /                                  the groups, with sign-up and archive links
    GET  /subscribe/{group}  POST           sign-up form; double opt-in email
    GET  /confirm/{token}    POST           confirmation page with a button; POST confirms
    GET  /unsubscribe/{token}               page with a confirm button (GET changes nothing)
    POST /unsubscribe/{token}               RFC 8058 one-click (List-Unsubscribe=One-Click)
    POST /unsubscribe/{token}/confirm       the page's button (may leave every group)
    GET  /preferences/{token}  POST         groups, language, name
    GET  /preferences/{token}/export        my data as JSON
    POST /preferences/{token}/forget        erase me
    GET  /archive/{group}  /archive/{group}/{id}  /archive/{group}/feed.atom
    GET  /events/{item}.ics                 an event for the calendar
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from babel import Locale, negotiate_locale
from itsdangerous.encoding import base64_decode, bytes_to_int
from jinja2 import Environment
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.audience import selfservice
from newsletter.audience.subscribers import forget
from newsletter.core.errors import DeliveryError, InputError, NotFoundError
from newsletter.core.i18n import available_languages, base_language, translations
from newsletter.core.site import Site
from newsletter.core.tokens import BadToken, Purpose, Signer, TokenData
from newsletter.delivery.transports import Transport
from newsletter.editions.render import template_environment
from newsletter.web.archive import Archive
from newsletter.web.security import CSRF_COOKIE, CSRF_FIELD, Csrf, Message, RateLimits, SecurityHeaders

MAX_BODY = 16_384
CONSENT_TEXT = (
    "I agree to receive %(group)s by email. I can unsubscribe at any time with the link in every email; "
    "my address is used for nothing else."
)
PREFERENCES_CONSENT_TEXT = "Tick the lists you want to receive by email; untick a list to stop receiving it."
# Each language by its own name ("Deutsch"), for the language menus.
LANGUAGE_NAMES = {
    code: (Locale.parse(code).get_display_name(code) or code).capitalize()
    for code in sorted(available_languages())
}
# GET and HEAD only show a page; link scanners send both.
SAFE_METHODS = frozenset({"GET", "HEAD"})


def issued_at(token: str) -> datetime:
    """When a token that has been verified was signed (itsdangerous puts the time before the signature)."""
    stamp = token.rsplit(".", 2)[-2]
    return datetime.fromtimestamp(bytes_to_int(base64_decode(stamp)), UTC)


async def limited_body(request: Request) -> Request | None:
    """The request with its body read, or None once the body passes MAX_BODY.

    The body is counted as it arrives, so a chunked upload without a Content-Length
    is cut off as early as one that announces its size.
    """
    try:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return None
    except ValueError:
        return None
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


def accepted_languages(header: str) -> list[str]:
    """The languages of an Accept-Language header, best-rated first (RFC 9110, section 12.5.4)."""
    rated = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag.strip() and tag.strip() != "*" and quality > 0:
            rated.append((-quality, position, tag.strip().replace("-", "_")))
    return [tag for _, _, tag in sorted(rated)]


class WebApp:
    def __init__(self, site: Site, transport_factory: Callable[[], Transport], limits: RateLimits) -> None:
        self.site = site
        self.settings = site.settings
        self.transport_factory = transport_factory
        self.limits = limits
        self.signer = Signer(self.settings.signing_key)
        self.csrf = Csrf(self.settings.signing_key)
        self.templates: Environment = template_environment(self.settings.site_dir)

    # -- helpers ---------------------------------------------------------------------------

    def language(self, request: Request, default: str) -> str:
        wanted = request.query_params.get("lang")
        if wanted and base_language(wanted) in available_languages():
            return base_language(wanted)
        offered = accepted_languages(request.headers.get("accept-language", ""))
        chosen = negotiate_locale(offered, sorted(available_languages())) if offered else None
        return base_language(chosen) if chosen else base_language(default)

    def page(
        self, request: Request, template: str, *, language: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        nonce = request.cookies.get(CSRF_COOKIE) or Csrf.new_nonce()
        gettext = translations(language).gettext
        self.templates.install_gettext_callables(  # type: ignore[attr-defined]
            gettext, translations(language).ngettext, newstyle=True
        )
        html = self.templates.get_template(f"web/{template}").render(
            site=self.settings.site,
            language=language,
            language_names=LANGUAGE_NAMES,
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf.token_for(nonce),
            request_path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if CSRF_COOKIE not in request.cookies:
            secure = self.settings.site.base_url.startswith("https://") and request.url.scheme == "https"
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=secure)
        return response

    def message(
        self, request: Request, title: str, text: str, *, language: str, status: int = 200
    ) -> HTMLResponse:
        return self.page(request, "message.html.j2", language=language, status=status, title=title, text=text)

    async def form(self, request: Request) -> FormData | None:
        """The posted form, or None if it is too large or its CSRF token does not match."""
        limited = await limited_body(request)
        if limited is None:
            return None
        form = await limited.form(max_files=0, max_fields=20)
        token = form.get(CSRF_FIELD)
        if not self.csrf.valid(request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None):
            return None
        return form

    def rejected(self, request: Request, language: str) -> HTMLResponse:
        gettext = translations(language).gettext
        return self.message(
            request,
            gettext("Request refused"),
            gettext("The form expired or was sent from elsewhere. Reload the page and try again."),
            language=language,
            status=403,
        )

    async def open_link(
        self, purpose: Purpose, token: str, max_age: int | None = None
    ) -> tuple[TokenData, str]:
        """The token's data and its subscriber's language; BadToken or NotFoundError if it is no good.

        A link older than its subscriber was made for someone erased since (SQLite hands
        out an erased row's id again), so it is refused.
        """
        data = self.signer.read(purpose, token, max_age=max_age)
        language = await run_in_threadpool(self._language_of, data, issued_at(token))
        return data, language

    def bad_link(self, request: Request, exc: Exception) -> HTMLResponse:
        language = self.language(request, self.settings.site.language)
        gettext = translations(language).gettext
        return self.message(
            request, gettext("This link does not work"), gettext(str(exc)), language=language, status=400
        )

    def groups(self) -> list[dict[str, str]]:
        return [
            {
                "slug": slug,
                "name": g.name,
                "description": g.description,
                "language": g.language,
                "brand_color": g.brand_color,
            }
            for slug, g in self.settings.groups.items()
        ]

    # -- pages -----------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        language = self.language(request, self.settings.site.language)
        return self.page(request, "index.html.j2", language=language, groups=self.groups())

    async def subscribe(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        group = self.settings.groups[slug]
        language = self.language(request, group.language)
        gettext = translations(language).gettext
        consent = gettext(CONSENT_TEXT) % {"group": group.name}
        context: dict[str, Any] = {
            "group": {"slug": slug, **group.model_dump()},
            "consent": consent,
            "languages": sorted(available_languages()),
        }
        if request.method == "GET":
            return self.page(request, "subscribe.html.j2", language=language, **context)
        form = await self.form(request)
        if form is None:
            return self.rejected(request, language)
        email, name = str(form.get("email", ""))[:320], str(form.get("name", ""))[:200]
        wanted_language = str(form.get("language", ""))[:35] or language
        client = request.client.host if request.client else "unknown"
        if form.get("consent") != "yes":
            return self.page(
                request,
                "subscribe.html.j2",
                language=language,
                status=400,
                error=gettext("Please tick the box to give your consent."),
                email=email,
                name=name,
                **context,
            )
        if not self.limits.allow_client(client):
            return self.message(
                request,
                gettext("Too many requests"),
                gettext("Please wait an hour before trying again."),
                language=language,
                status=429,
            )
        try:
            await run_in_threadpool(self._subscribe, slug, email, name, wanted_language, consent, client)
        except InputError as exc:
            return self.page(
                request,
                "subscribe.html.j2",
                language=language,
                status=400,
                error=str(exc),
                email=email,
                name=name,
                **context,
            )
        except DeliveryError:
            return self.message(
                request,
                gettext("Please try again later"),
                gettext("We could not send the confirmation email just now."),
                language=language,
                status=503,
            )
        return self.message(
            request,
            gettext("Check your inbox"),
            gettext(
                "If the address can receive our emails, a message with a confirmation link "
                "is on its way. The link works for two days."
            ),
            language=language,
        )

    def _subscribe(self, slug: str, email: str, name: str, language: str, consent: str, client: str) -> None:
        with self.site.transaction() as session:
            subscription = selfservice.request_subscription(
                session,
                self.settings,
                slug,
                email,
                name=name,
                language=language,
                consent_text=consent,
                ip=client,
            )
        if not subscription.needs_confirmation:
            return
        if not self.limits.allow_address(subscription.email.casefold()):
            return
        message = selfservice.confirmation_message(
            self.settings, self.signer, subscription, self.settings.groups[slug].name
        )
        transport = self.transport_factory()
        try:
            transport.send(message)
        finally:
            transport.close()

    async def confirm(self, request: Request) -> Response:
        try:
            data, language = await self.open_link(
                "confirm", request.path_params["token"], selfservice.CONFIRM_MAX_AGE
            )
        except (BadToken, NotFoundError) as exc:
            return self.bad_link(request, exc)
        gettext = translations(language).gettext
        if request.method in SAFE_METHODS:
            return self.page(request, "confirm.html.j2", language=language)
        if await self.form(request) is None:
            return self.rejected(request, language)
        client = request.client.host if request.client else None
        changed = await run_in_threadpool(self._confirm, data, client)
        text = (
            gettext("Your subscription is confirmed. Welcome!")
            if changed
            else gettext("This subscription was already confirmed.")
        )
        return self.message(request, gettext("Subscription confirmed"), text, language=language)

    def _language_of(self, data: TokenData, issued: datetime | None = None) -> str:
        with self.site.transaction() as session:
            return selfservice.language_of(session, self.settings, data, issued=issued)

    def _confirm(self, data: TokenData, client: str | None) -> bool:
        with self.site.transaction() as session:
            return selfservice.confirm(session, data, ip=client)

    def _unsubscribe(self, data: TokenData, everything: bool, source: str) -> list[str]:
        with self.site.transaction() as session:
            return selfservice.unsubscribe(session, data, everything=everything, source=source)

    async def unsubscribe(self, request: Request) -> Response:
        try:
            data, language = await self.open_link("unsubscribe", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            if request.method == "POST":
                return PlainTextResponse(str(exc), status_code=400)
            return self.bad_link(request, exc)
        if request.method in SAFE_METHODS:
            return self.page(request, "unsubscribe.html.j2", language=language)
        # RFC 8058: the mail provider POSTs List-Unsubscribe=One-Click, without cookies.
        limited = await limited_body(request)
        if limited is None:
            return PlainTextResponse("request too large", status_code=413)
        form = await limited.form(max_files=0, max_fields=5)
        if form.get("List-Unsubscribe") != "One-Click":
            return PlainTextResponse("expected List-Unsubscribe=One-Click", status_code=400)
        await run_in_threadpool(self._unsubscribe, data, False, "one-click")
        return PlainTextResponse("unsubscribed")

    async def unsubscribe_confirm(self, request: Request) -> Response:
        try:
            data, language = await self.open_link("unsubscribe", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            return self.bad_link(request, exc)
        form = await self.form(request)
        if form is None:
            return self.rejected(request, language)
        left = await run_in_threadpool(self._unsubscribe, data, form.get("everything") == "yes", "web")
        gettext = translations(language).gettext
        text = (
            gettext("You will receive no more emails from these lists: %(groups)s.")
            % {"groups": ", ".join(self.settings.groups[s].name for s in left)}
            if left
            else gettext("You were already unsubscribed.")
        )
        return self.message(request, gettext("Unsubscribed"), text, language=language)

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            data, language = await self.open_link("preferences", token)
        except (BadToken, NotFoundError) as exc:
            return self.bad_link(request, exc)
        gettext = translations(language).gettext
        saved = False
        if request.method == "POST":
            form = await self.form(request)
            if form is None:
                return self.rejected(request, language)
            groups = {str(g) for g in form.getlist("groups") if str(g) in self.settings.groups}
            try:
                await run_in_threadpool(
                    self._save_preferences,
                    data,
                    groups,
                    str(form.get("name", ""))[:200],
                    str(form.get("language", ""))[:35] or None,
                    gettext(PREFERENCES_CONSENT_TEXT),
                    request.client.host if request.client else None,
                )
            except InputError as exc:
                return self.message(request, gettext("Not saved"), str(exc), language=language, status=400)
            language = await run_in_threadpool(self._language_of, data)
            saved = True
        prefs = await run_in_threadpool(self._preferences, data)
        return self.page(
            request,
            "preferences.html.j2",
            language=language,
            prefs=prefs,
            groups=self.groups(),
            languages=sorted(available_languages()),
            token=token,
            saved=saved,
            consent=translations(language).gettext(PREFERENCES_CONSENT_TEXT),
        )

    def _preferences(self, data: TokenData) -> selfservice.Preferences:
        with self.site.transaction() as session:
            return selfservice.preferences(session, self.settings, data)

    def _save_preferences(
        self,
        data: TokenData,
        groups: set[str],
        name: str,
        language: str | None,
        consent: str,
        client: str | None,
    ) -> None:
        with self.site.transaction() as session:
            selfservice.update_preferences(
                session,
                self.settings,
                data,
                groups=groups,
                name=name,
                language=language,
                consent_text=consent,
                ip=client,
            )

    async def export(self, request: Request) -> Response:
        try:
            data, _ = await self.open_link("preferences", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            return self.bad_link(request, exc)

        def work() -> dict[str, Any]:
            with self.site.transaction() as session:
                return selfservice.export(session, data)

        try:
            body = await run_in_threadpool(work)
        except NotFoundError as exc:
            return self.bad_link(request, exc)
        return JSONResponse(body, headers={"content-disposition": 'attachment; filename="my-data.json"'})

    async def forget(self, request: Request) -> Response:
        try:
            data, language = await self.open_link("preferences", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            return self.bad_link(request, exc)
        if await self.form(request) is None:
            return self.rejected(request, language)

        def work() -> None:
            with self.site.transaction() as session:
                prefs = selfservice.preferences(session, self.settings, data)
                forget(session, prefs.email, actor="subscriber")

        await run_in_threadpool(work)
        gettext = translations(language).gettext
        return self.message(
            request,
            gettext("Deleted"),
            gettext("Everything we held about you has been erased."),
            language=language,
        )

    async def generic_unsubscribe(self, request: Request) -> Response:
        language = self.language(request, self.settings.site.language)
        gettext = translations(language).gettext
        return self.message(
            request,
            gettext("Unsubscribe"),
            gettext(
                "Use the unsubscribe link at the bottom of an email you received: it is personal to you."
            ),
            language=language,
        )


def create_app(
    site: Site, transport_factory: Callable[[], Transport], *, limits: RateLimits | None = None
) -> SecurityHeaders:
    """The ASGI application, with security headers on every response."""
    web = WebApp(site, transport_factory, limits or RateLimits())
    archive = Archive(web)
    routes = [
        Route("/", web.index),
        Route("/subscribe/{group}", web.subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", web.confirm, methods=["GET", "POST"]),
        Route("/unsubscribe", web.generic_unsubscribe),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}/confirm", web.unsubscribe_confirm, methods=["POST"]),
        Route("/preferences", web.generic_unsubscribe),
        Route("/preferences/{token}", web.preferences, methods=["GET", "POST"]),
        Route("/preferences/{token}/export", web.export),
        Route("/preferences/{token}/forget", web.forget, methods=["POST"]),
        Route("/archive/{group}", archive.archive),
        Route("/archive/{group}/feed.atom", archive.archive_feed),
        Route("/archive/{group}/{edition:int}", archive.archive_edition),
        Route("/events/{item:int}.ics", archive.event),
    ]
    return SecurityHeaders(Starlette(routes=routes))
