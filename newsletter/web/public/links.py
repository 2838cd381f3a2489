"""Personal links: each subscriber page opens with a signed token, never with an address.

A token names a subscriber and a group and says what it is for (``confirm``,
``unsubscribe``, ``preferences``); the page then speaks that subscriber's language.
"""

from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.audience import selfservice
from newsletter.core.i18n import translations
from newsletter.core.site import Site
from newsletter.core.tokens import Purpose, Signer, TokenData, issued_at
from newsletter.web.pages import Pages


class Links:
    """Opens a personal link: the token's data and the language of the person it names."""

    def __init__(self, site: Site, pages: Pages) -> None:
        self.site = site
        self.settings = site.settings
        self.pages = pages
        self.signer = Signer(self.settings.signing_key)

    async def open(self, purpose: Purpose, token: str, max_age: int | None = None) -> tuple[TokenData, str]:
        """The token's data and its subscriber's language; BadToken or NotFoundError if it is no good.

        A link older than its subscriber was made for someone erased since (SQLite hands
        out an erased row's id again), so it is refused.
        """
        data = self.signer.read(purpose, token, max_age=max_age)
        language = await run_in_threadpool(self.language_of, data, issued_at(token))
        return data, language

    def language_of(self, data: TokenData, issued: datetime | None = None) -> str:
        with self.site.transaction() as session:
            return selfservice.language_of(session, self.settings, data, issued=issued)

    def bad(self, request: Request, exc: Exception) -> HTMLResponse:
        """The page for a link that is forged, expired or names nobody any more."""
        language = self.pages.language(request, self.settings.site.language)
        gettext = translations(language).gettext
        return self.pages.message(
            request, gettext("This link does not work"), exc, language=language, status=400
        )

    async def without_token(self, request: Request) -> Response:
        """``/unsubscribe`` or ``/preferences`` without a token: where to find the personal link."""
        language = self.pages.language(request, self.settings.site.language)
        gettext = translations(language).gettext
        return self.pages.message(
            request,
            gettext("Unsubscribe"),
            gettext(
                "Use the unsubscribe link at the bottom of an email you received: it is personal to you."
            ),
            language=language,
        )
