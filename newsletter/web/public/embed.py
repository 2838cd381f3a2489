"""Signing up on a group's own website: an embedded form, and a JSON endpoint for its server.

POST /subscribe/{group}/embedded   the form embedded in the group's website (a cross-site POST)
POST /subscribe/{group}.json       the same sign-up as JSON, from the website's own server

A form posted from another site arrives without our CSRF cookie (it is SameSite), so
these two routes do not ask for it. What protects them instead:

- a form token (``core/tokens.py``): an HMAC with the site's secret over the group, the
  form's id and the day it was made; forged, moved to another group or expired: refused;
- a honeypot field (``website``) that people never see and bots fill in: such a post is
  answered like any other and stores nothing;
- the sign-up form's rate limits: per client for the browser form, per form for the JSON
  endpoint (whose client is always the website's server), and per address for both,
  silently, as on our own page;
- double opt-in as always: the person ends ``pending`` and gets the confirmation email.

Known and unknown addresses get the same answer. After the browser form, the visitor
sees our "check your inbox" page, or is sent back to the ``return`` URL if, and only if,
it is on the group's ``website`` origin (no open redirect).
"""

import json
import logging
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter.audience import selfservice
from newsletter.core.errors import BadToken, InputError
from newsletter.core.i18n import available_languages, base_language, translations
from newsletter.core.models import utcnow
from newsletter.core.sections import GroupConfig
from newsletter.core.settings import Settings
from newsletter.core.tokens import FormToken, make_form_token, read_form_token
from newsletter.web.forms import MAX_BODY, client_address, limited_body
from newsletter.web.public.links import Links
from newsletter.web.public.signup import CONSENT_TEXT
from newsletter.web.security import RateLimits

log = logging.getLogger(__name__)
# The honeypot: a field hidden from people, which form-filling bots fill in.
HONEYPOT = "website"
# Off-screen rather than display:none, which some bots recognise and skip.
HIDDEN = "position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden"
TOKEN_FIELD = "form_token"
# Sign-ups a form's JSON endpoint takes per hour: all of them come from one server.
JSON_PER_FORM_PER_HOUR = 300
ACCEPTED = (
    "If the address can receive our emails, a message with a confirmation link "
    "is on its way. The link works for two days."
)


def website_origin(url: str | None) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a website address, or None if it is not a plain http(s) URL."""
    if not url or any(ord(ch) < 33 or ch == "\\" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def safe_return(url: str, group: GroupConfig) -> str | None:
    """``url`` if it is on the group's website origin (same scheme, host and port), else None."""
    wanted = website_origin(url)
    return url if wanted is not None and wanted == website_origin(group.website) else None


def snippet(settings: Settings, slug: str, form_id: str, today: date) -> str:
    """The HTML a group pastes into its website: a plain form, with its token, in the group's language."""
    group = settings.groups[slug]
    gettext = translations(group.language).gettext
    token = make_form_token(settings.signing_key, slug, form_id, today)
    action = f"{settings.site.base_url.rstrip('/')}/subscribe/{slug}/embedded"
    consent = gettext(CONSENT_TEXT) % {"group": group.name}
    ident = f"nl-{slug}-{form_id}"
    back = f'  <input type="hidden" name="return" value="{escape(group.website)}">\n' if group.website else ""
    return (
        f'<form method="post" action="{escape(action)}" accept-charset="utf-8" class="newsletter-signup">\n'
        f'  <input type="hidden" name="{TOKEN_FIELD}" value="{escape(token)}">\n'
        f'  <input type="hidden" name="language" value="{escape(group.language)}">\n'
        f"{back}"
        f'  <p><label for="{ident}-email">{escape(gettext("Email address"))}</label>\n'
        f'  <input type="email" id="{ident}-email" name="email" required maxlength="320" '
        f'autocomplete="email"></p>\n'
        f'  <p><label for="{ident}-name">{escape(gettext("Name (optional)"))}</label>\n'
        f'  <input type="text" id="{ident}-name" name="name" maxlength="200" autocomplete="name"></p>\n'
        f'  <p style="{HIDDEN}" aria-hidden="true">'
        f'<label for="{ident}-{HONEYPOT}">{escape(gettext("Leave this field empty"))}</label>'
        f'<input type="text" id="{ident}-{HONEYPOT}" name="{HONEYPOT}" tabindex="-1" '
        'autocomplete="off"></p>\n'
        '  <p><label><input type="checkbox" name="consent" value="yes" required> '
        f"{escape(consent)}</label></p>\n"
        f'  <p><button type="submit">{escape(gettext("Subscribe"))}</button></p>\n'
        "</form>\n"
    )


def json_example(settings: Settings, slug: str, form_id: str, today: date) -> str:
    """A curl command that signs someone up through the JSON endpoint, for the website's developer."""
    token = make_form_token(settings.signing_key, slug, form_id, today)
    body = {"token": token, "email": "reader@example.org", "name": "", "consent": True}
    return (
        f"curl -X POST {settings.site.base_url.rstrip('/')}/subscribe/{slug}.json \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d '{json.dumps(body)}'\n"
    )


def known_language(wanted: str, group: GroupConfig) -> str:
    """The language a form asks for if we have its strings, else the group's (never a stranger's value)."""
    base = base_language(wanted.strip()[:35])
    return base if base in available_languages() else group.language


def json_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error of the JSON endpoint: ``{"error": {"code": ..., "message": ...}}``; ``code`` is stable."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class EmbeddedSignUp:
    """The two sign-up routes for a group's own website (see the module docstring)."""

    def __init__(self, links: Links, limits: RateLimits) -> None:
        self.pages = links.pages
        self.site = links.site
        self.settings = links.settings
        self.limits = limits

    def routes(self) -> list[Route]:
        # Listed before /subscribe/{group}, which would otherwise take "uk.json" for a group.
        return [
            Route("/subscribe/{group}.json", self.json, methods=["POST"]),
            Route("/subscribe/{group}/embedded", self.form, methods=["POST"]),
        ]

    def _token(self, slug: str, token: object) -> FormToken:
        if not isinstance(token, str) or not token:
            raise BadToken("the form token is missing")
        return read_form_token(self.settings.signing_key, slug, token, today=utcnow().date())

    # -- the browser form ------------------------------------------------------------------

    async def form(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        group = self.settings.groups[slug]
        form = await (await limited_body(request, MAX_BODY)).form(max_files=0, max_fields=20)
        # The form's own language (the snippet's) is the person's and the consent's; the
        # answer page speaks the browser's.
        form_language = known_language(str(form.get("language", "")), group)
        language = self.pages.language(request, form_language)
        gettext = translations(language).gettext
        try:
            token = self._token(slug, form.get(TOKEN_FIELD))
        except BadToken as exc:
            log.info("embedded sign-up for %s refused: %s", slug, exc)
            text = gettext(
                "This sign-up form is no longer valid. Please tell the website that shows it, "
                "or sign up on this site instead."
            )
            title = gettext("Request refused")
            return self.pages.message(request, title, text, language=language, status=403)
        client = client_address(request) or "unknown"
        if not await run_in_threadpool(self.limits.allow_client, client):
            return self.pages.too_many(request, language)
        back = safe_return(str(form.get("return", ""))[:2000], group)
        if str(form.get(HONEYPOT, "")).strip():
            # A bot: answered as a person would be, so it learns nothing; nothing is stored.
            log.info("embedded sign-up for %s: honeypot filled, ignored", slug)
            return self._accepted(request, language, back)
        if form.get("consent") != "yes":
            text = gettext("Please tick the box to give your consent.")
            title = gettext("Request refused")
            return self.pages.message(request, title, text, language=language, status=400)
        email, name = str(form.get("email", ""))[:320], str(form.get("name", ""))[:200]
        consent = translations(form_language).gettext(CONSENT_TEXT) % {"group": group.name}
        try:
            await run_in_threadpool(
                self._subscribe, slug, email, name, form_language, consent, client, f"embed:{token.form_id}"
            )
        except InputError as exc:
            return self.pages.message(
                request, gettext("Request refused"), str(exc), language=language, status=400
            )
        return self._accepted(request, language, back)

    def _accepted(self, request: Request, language: str, back: str | None) -> Response:
        if back:
            return RedirectResponse(back, status_code=303)
        gettext = translations(language).gettext
        return self.pages.message(request, gettext("Check your inbox"), gettext(ACCEPTED), language=language)

    def _subscribe(
        self, slug: str, email: str, name: str, language: str, consent: str, client: str, source: str
    ) -> None:
        # Past its limit, an address (counted without +tags or case) gets nothing more,
        # and the answer is the same as for any other address.
        address = selfservice.sign_up_address(email)
        if not self.limits.allow_address(selfservice.sign_up_limit_key(address)):
            return
        selfservice.request_subscription(
            self.site.engine,
            slug,
            address,
            name=name or None,
            language=language,
            consent_text=consent,
            ip=client,
            source=source,
        )

    # -- the JSON endpoint -----------------------------------------------------------------

    async def json(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return json_error(404, "unknown_group", "There is no such group.")
        group = self.settings.groups[slug]
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return json_error(415, "unsupported_media_type", "Send the sign-up as application/json.")
        try:
            body = await (await limited_body(request, MAX_BODY)).body()
        except HTTPException as exc:
            if exc.status_code == 413:
                return json_error(413, "too_large", f"The body is over {MAX_BODY:,} bytes.")
            raise
        data = _json_object(body)
        if data is None:
            return json_error(400, "invalid_json", "The body is not a JSON object.")
        try:
            token = self._token(slug, data.get("token"))
        except BadToken as exc:
            return json_error(401, "invalid_token", str(exc))
        if not await run_in_threadpool(self._allow_form, slug, token.form_id):
            too_many = "Too many sign-ups from this form; wait an hour."
            return json_error(429, "rate_limited", too_many, headers={"retry-after": "3600"})
        fields = {key: data.get(key) for key in ("email", "name", "language")}
        if not isinstance(fields["email"], str) or not fields["email"].strip():
            return json_error(400, "invalid_request", "Give the address as a string in 'email'.")
        if any(value is not None and not isinstance(value, str) for value in fields.values()):
            return json_error(400, "invalid_request", "'email', 'name' and 'language' must be strings.")
        if data.get("consent") is not True:
            return json_error(
                400, "consent_required", "The person must agree to receive the newsletter ('consent': true)."
            )
        email = str(fields["email"])[:320]
        name = str(fields["name"] or "")[:200]
        language = known_language(str(fields["language"] or ""), group)
        consent = translations(language).gettext(CONSENT_TEXT) % {"group": group.name}
        client = client_address(request) or "unknown"
        try:
            await run_in_threadpool(
                self._subscribe, slug, email, name, language, consent, client, f"json:{token.form_id}"
            )
        except InputError as exc:
            return json_error(400, "invalid_address", str(exc))
        return JSONResponse({"status": "accepted", "message": ACCEPTED}, status_code=202)

    def _allow_form(self, slug: str, form_id: str) -> bool:
        return self.limits.counter.hit("sign-up:form", f"{slug}:{form_id}", JSON_PER_FORM_PER_HOUR)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not UTF-8, not JSON, nested too deep, not an object)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
