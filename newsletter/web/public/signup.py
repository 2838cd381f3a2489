"""Joining a list: the front page, the sign-up form (double opt-in) and the confirmation link.

Sign-up records the consent text the visitor read and queues a confirmation email,
which the worker or the daemon sends (``delivery/confirmations.py``): the answer is
the same page, status and work for every address, known or new, relay up or down.
The link opens a page with a button, and only that POST confirms, so a mail scanner
that fetches the link confirms nobody; it works once (``selfservice.confirm``).
"""

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.audience import selfservice
from newsletter.core.errors import BadToken, InputError, NotFoundError
from newsletter.core.i18n import available_languages, translations
from newsletter.core.settings import Settings
from newsletter.core.tokens import TokenData
from newsletter.web.forms import SAFE_METHODS, client_address
from newsletter.web.public.links import Links
from newsletter.web.security import RateLimits

CONSENT_TEXT = (
    "I agree to receive %(group)s by email. I can unsubscribe at any time with the link in every email; "
    "my address is used for nothing else."
)


def public_groups(settings: Settings) -> list[dict[str, str]]:
    """Every group as the pages show it."""
    return [
        {
            "slug": slug,
            "name": g.name,
            "description": g.description,
            "language": g.language,
            "brand_color": g.brand_color,
        }
        for slug, g in settings.groups.items()
    ]


class SignUp:
    def __init__(self, links: Links, limits: RateLimits) -> None:
        self.links = links
        self.pages = links.pages
        self.site = links.site
        self.settings = links.settings
        self.limits = limits

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index),
            Route("/subscribe/{group}", self.subscribe, methods=["GET", "POST"]),
            Route("/confirm/{token}", self.confirm, methods=["GET", "POST"]),
        ]

    async def index(self, request: Request) -> Response:
        language = self.pages.language(request, self.settings.site.language)
        return self.pages.page(
            request, "index.html.j2", language=language, groups=public_groups(self.settings)
        )

    async def subscribe(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        group = self.settings.groups[slug]
        language = self.pages.language(request, group.language)
        gettext = translations(language).gettext
        consent = gettext(CONSENT_TEXT) % {"group": group.name}
        context: dict[str, Any] = {
            "group": {"slug": slug, **group.model_dump()},
            "consent": consent,
            "languages": sorted(available_languages()),
        }
        if request.method == "GET":
            return self.pages.page(request, "subscribe.html.j2", language=language, **context)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, language)
        email, name = str(form.get("email", ""))[:320], str(form.get("name", ""))[:200]
        wanted_language = str(form.get("language", ""))[:35] or language
        client = client_address(request) or "unknown"
        if form.get("consent") != "yes":
            return self.pages.page(
                request,
                "subscribe.html.j2",
                language=language,
                status=400,
                error=gettext("Please tick the box to give your consent."),
                email=email,
                name=name,
                **context,
            )
        try:
            # The counters may be the database or Redis: never wait on them in the event loop.
            # One trip to a worker thread for the limits and the write, not one each.
            allowed = await run_in_threadpool(
                self._subscribe, slug, email, name, wanted_language, consent, client
            )
        except InputError as exc:
            return self.pages.page(
                request,
                "subscribe.html.j2",
                language=language,
                status=400,
                error=exc,
                email=email,
                name=name,
                **context,
            )
        if not allowed:
            return self.pages.too_many(request, language)
        return self.pages.message(
            request,
            gettext("Check your inbox"),
            gettext(
                "If the address can receive our emails, a message with a confirmation link "
                "is on its way. The link works for two days."
            ),
            language=language,
        )

    def _subscribe(self, slug: str, email: str, name: str, language: str, consent: str, client: str) -> bool:
        """Record the sign-up; False when the client is past its limit (the page says so)."""
        try:
            address = selfservice.sign_up_address(email)
        except InputError:
            # A wrong address still counts against the client, before it is told so.
            if not self.limits.allow_client(client):
                return False
            raise
        client_ok, address_ok = self.limits.allow(client, selfservice.sign_up_limit_key(address))
        if not client_ok:
            return False
        # Past its limit, an address (counted without +tags or case) gets nothing more,
        # and the page says the same as for any other address.
        if not address_ok:
            return True
        selfservice.request_subscription(
            self.site.engine,
            slug,
            address,
            name=name,
            language=language,
            consent_text=consent,
            ip=client,
        )
        return True

    async def confirm(self, request: Request) -> Response:
        try:
            data, language = await self.links.open(
                "confirm", request.path_params["token"], selfservice.CONFIRM_MAX_AGE
            )
        except (BadToken, NotFoundError) as exc:
            return self.links.bad(request, exc)
        gettext = translations(language).gettext
        if request.method in SAFE_METHODS:
            return self.pages.page(request, "confirm.html.j2", language=language)
        if await self.pages.form(request) is None:
            return self.pages.rejected(request, language)
        try:
            changed = await run_in_threadpool(self._confirm, data, client_address(request))
        except (BadToken, NotFoundError) as exc:
            return self.links.bad(request, exc)
        text = (
            gettext("Your subscription is confirmed. Welcome!")
            if changed
            else gettext("This subscription was already confirmed.")
        )
        return self.pages.message(request, gettext("Subscription confirmed"), text, language=language)

    def _confirm(self, data: TokenData, client: str | None) -> bool:
        with self.site.transaction() as session:
            return selfservice.confirm(session, data, ip=client)
