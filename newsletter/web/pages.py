"""Server-rendered pages: the page's language, its template, its CSRF form, the message page.

Every page is rendered in one language, and so is everything on it: an error or a
:class:`~newsletter.core.messages.Message` handed to :meth:`Pages.page` as a value
(``error=exc``) is translated there, and templates show a status through ``label()``
(``{{ label(edition.status) }}``), so no route translates an error of its own.

One :class:`Pages` serves every part of the web app. The subscriber pages use it today;
the editors' workspace will render through the same templates, languages and forms.
"""

from enum import StrEnum
from functools import lru_cache
from typing import Any

from babel import Locale, negotiate_locale
from jinja2 import Environment
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.core.errors import NewsletterError
from newsletter.core.i18n import available_languages, base_language, translations
from newsletter.core.messages import Catalog, Label, Message, label, translate
from newsletter.core.settings import Settings
from newsletter.editions.render import template_environment
from newsletter.web.forms import MAX_BODY, limited_body
from newsletter.web.security import CSRF_COOKIE, CSRF_FIELD, Csrf


@lru_cache(maxsize=8)
def language_names(codes: frozenset[str]) -> dict[str, str]:
    """Each language by its own name ("Deutsch"), for the language menus."""
    return {code: (Locale.parse(code).get_display_name(code) or code).capitalize() for code in sorted(codes)}


def localized(value: Any, catalog: Catalog) -> Any:
    """A page's value as the reader reads it: an error or a message translated, anything else as it is."""
    if isinstance(value, NewsletterError):
        return translate(value.msg, catalog)
    if isinstance(value, Message):
        return translate(value, catalog)
    if isinstance(value, Exception):
        return translate(str(value), catalog)
    return value


def as_label(value: object, kind: str) -> Label | StrEnum:
    """A template's status value as a label: an enum knows its kind, a plain string is told it."""
    return value if isinstance(value, Label | StrEnum) else Label(kind, str(value))


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


class Pages:
    """Renders the site's ``web/`` templates in a language, with a CSRF token in every form."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.csrf = Csrf(settings.signing_key)
        self.templates: Environment = template_environment(settings.site_dir)

    def language(self, request: Request, default: str) -> str:
        """The page's language: ``?lang=``, else the browser's best-rated one we have, else ``default``."""
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
        catalog = translations(language)
        self.templates.install_gettext_callables(  # type: ignore[attr-defined]
            catalog.gettext, catalog.ngettext, newstyle=True
        )
        html = self.templates.get_template(f"web/{template}").render(
            site=self.settings.site,
            language=language,
            label=lambda value, kind="": label(as_label(value, kind), catalog),
            **{name: localized(value, catalog) for name, value in context.items()},
            language_names=language_names(available_languages()),
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf.token_for(nonce),
            request_path=request.url.path,
        )
        response = HTMLResponse(html, status_code=status)
        if CSRF_COOKIE not in request.cookies:
            secure = self.settings.site.base_url.startswith("https://") and request.url.scheme == "https"
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=secure)
        return response

    def message(
        self, request: Request, title: str, text: str | Exception, *, language: str, status: int = 200
    ) -> HTMLResponse:
        """A page with a heading and one paragraph: a result, a refusal, an explanation."""
        return self.page(request, "message.html.j2", language=language, status=status, title=title, text=text)

    async def form(
        self, request: Request, *, max_fields: int = 20, limit: int = MAX_BODY, max_files: int = 0
    ) -> FormData | None:
        """The posted form, or None if its CSRF token does not match; a body over ``limit`` is a 413.

        Forms take no file unless ``max_files`` says so (an upload, within ``limit``).
        """
        limited = await limited_body(request, limit)
        form = await limited.form(max_files=max_files, max_fields=max_fields)
        token = form.get(CSRF_FIELD)
        if not self.csrf.valid(request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None):
            return None
        return form

    def too_many(self, request: Request, language: str) -> HTMLResponse:
        """The answer to a client past its rate limit (429)."""
        gettext = translations(language).gettext
        return self.message(
            request,
            gettext("Too many requests"),
            gettext("Please wait an hour before trying again."),
            language=language,
            status=429,
        )

    def rejected(self, request: Request, language: str) -> HTMLResponse:
        """The answer to a form whose CSRF token is missing or wrong."""
        gettext = translations(language).gettext
        return self.message(
            request,
            gettext("Request refused"),
            gettext("The form expired or was sent from elsewhere. Reload the page and try again."),
            language=language,
            status=403,
        )
