"""Leaving: the unsubscribe page, its button, and the RFC 8058 one-click POST.

Opening the link (GET or HEAD, as link scanners do) only shows a page. The page's
button is a CSRF-checked form that may leave every group. A mail provider's one-click
POST (``List-Unsubscribe=One-Click``) comes without cookies: its signed token is the
authority, and it leaves the token's group only.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.audience import selfservice
from newsletter.core.errors import BadToken, NotFoundError
from newsletter.core.i18n import translations
from newsletter.core.tokens import TokenData
from newsletter.web.forms import SAFE_METHODS, limited_body
from newsletter.web.public.links import Links


class Unsubscribe:
    def __init__(self, links: Links) -> None:
        self.links = links
        self.pages = links.pages
        self.site = links.site
        self.settings = links.settings

    def routes(self) -> list[Route]:
        return [
            Route("/unsubscribe", self.links.without_token),
            Route("/unsubscribe/{token}", self.unsubscribe, methods=["GET", "POST"]),
            Route("/unsubscribe/{token}/confirm", self.confirm, methods=["POST"]),
        ]

    def _unsubscribe(self, data: TokenData, everything: bool, source: str) -> list[str]:
        with self.site.transaction() as session:
            return selfservice.unsubscribe(session, data, everything=everything, source=source)

    async def unsubscribe(self, request: Request) -> Response:
        try:
            data, language = await self.links.open("unsubscribe", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            if request.method == "POST":
                return PlainTextResponse(str(exc), status_code=400)
            return self.links.bad(request, exc)
        if request.method in SAFE_METHODS:
            return self.pages.page(request, "unsubscribe.html.j2", language=language)
        # RFC 8058: the mail provider POSTs List-Unsubscribe=One-Click, without cookies.
        limited = await limited_body(request)
        form = await limited.form(max_files=0, max_fields=5)
        if form.get("List-Unsubscribe") != "One-Click":
            return PlainTextResponse("expected List-Unsubscribe=One-Click", status_code=400)
        await run_in_threadpool(self._unsubscribe, data, False, "one-click")
        return PlainTextResponse("unsubscribed")

    async def confirm(self, request: Request) -> Response:
        try:
            data, language = await self.links.open("unsubscribe", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            return self.links.bad(request, exc)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, language)
        left = await run_in_threadpool(self._unsubscribe, data, form.get("everything") == "yes", "web")
        gettext = translations(language).gettext
        text = (
            gettext("You will receive no more emails from these lists: %(groups)s.")
            % {"groups": ", ".join(self.settings.groups[s].name for s in left)}
            if left
            else gettext("You were already unsubscribed.")
        )
        return self.pages.message(request, gettext("Unsubscribed"), text, language=language)
