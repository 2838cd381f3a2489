"""Server-rendered pages: the page's language, its template, its CSRF form, the message page.

One :class:`Pages` serves every part of the web app. The subscriber pages use it today;
the editors' workspace will render through the same templates, languages and forms.
"""

from typing import Any

from babel import Locale, negotiate_locale
from jinja2 import Environment
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.core.i18n import available_languages, base_language, translations
from newsletter.core.settings import Settings
from newsletter.editions.render import template_environment
from newsletter.web.forms import MAX_BODY, limited_body
from newsletter.web.security import CSRF_COOKIE, CSRF_FIELD, Csrf

# Each language by its own name ("Deutsch"), for the language menus.
LANGUAGE_NAMES = {
    code: (Locale.parse(code).get_display_name(code) or code).capitalize()
    for code in sorted(available_languages())
}


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
