"""Signing in and out of the workspace: by emailed link (with a confirming button) or by password.

The address form answers the same page whether or not the address has an account,
and the look-up, the link and the email are made after the answer (a background
task), so neither the page nor its timing tells who has one. Sign-in is rate-limited by client and by address.
The link's GET only shows a button; its POST uses the link up and starts a session.
"""

import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from newsletter.accounts import sessions, signin
from newsletter.core import audit
from newsletter.core.errors import BadToken, NewsletterError
from newsletter.core.i18n import translations
from newsletter.core.models import User
from newsletter.delivery.signinmail import sign_in_message
from newsletter.delivery.transports import Transport, send_one
from newsletter.web.admin.auth import HOME, SESSION_COOKIE, SIGN_IN, Signed, Workspace, safe_next
from newsletter.web.forms import SAFE_METHODS, client_address
from newsletter.web.security import RateLimits

log = logging.getLogger(__name__)
LINK_MINUTES = int(signin.LINK_LIFETIME.total_seconds() // 60)


class SignIn:
    def __init__(
        self, workspace: Workspace, transport_factory: Callable[[], Transport], limits: RateLimits
    ) -> None:
        self.workspace = workspace
        self.site = workspace.site
        self.settings = workspace.settings
        self.pages = workspace.pages
        self.transport_factory = transport_factory
        self.limits = limits

    def routes(self) -> list[Route]:
        return [
            Route(SIGN_IN, self.sign_in, methods=["GET", "POST"]),
            Route("/admin/password-sign-in", self.password, methods=["POST"]),
            Route(SIGN_IN + "/{token}", self.link, methods=["GET", "POST"]),
            Route("/admin/sign-out", self.workspace.signed_in(self.sign_out), methods=["POST"]),
            Route(
                "/admin/sign-out-everywhere",
                self.workspace.signed_in(self.sign_out_everywhere),
                methods=["POST"],
            ),
        ]

    def _form_page(self, request: Request, language: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("next", safe_next(request.query_params.get("next")))
        context.setdefault("email", "")
        context.setdefault("error", "")
        return self.pages.page(request, "admin/sign-in.html.j2", language=language, status=status, **context)

    def _allowed(self, request: Request, email: str) -> tuple[bool, bool]:
        """Whether the client, and the address, are within their sign-in limits (counted at once)."""
        client = client_address(request) or "unknown"
        client_ok, address_ok = self.limits.allow(client, email.strip().casefold())
        return client_ok, client_ok and address_ok

    # -- by link ---------------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        language = self.workspace.language(request)
        if request.method in SAFE_METHODS:
            return self._form_page(request, language)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, language)
        email = str(form.get("email", ""))[:320]
        client_ok, address_ok = await run_in_threadpool(self._allowed, request, email)
        if not client_ok:
            return self.pages.too_many(request, language)
        gettext = translations(language).gettext
        response = self.pages.message(
            request,
            gettext("Check your inbox"),
            gettext(
                "If this address belongs to an account, a sign-in link is on its way. "
                "It works once, within %(minutes)d minutes."
            )
            % {"minutes": LINK_MINUTES},
            language=language,
        )
        if address_ok:
            response.background = BackgroundTask(self._send, email, language)
        return response

    def _send(self, email: str, language: str) -> None:
        """Mail a link if the address has an account; a failure is logged (the page has answered)."""
        try:
            with self.site.transaction() as session:
                link = signin.request_link(session, email, now=self.workspace.clock())
            if link is None:
                return
            message = sign_in_message(
                self.settings,
                user_id=link.user_id,
                email=link.email,
                name=link.name,
                url=link.url(self.settings),
                minutes=LINK_MINUTES,
                language=language,
            )
            send_one(self.transport_factory, message)
        except NewsletterError as exc:
            log.warning("could not send a sign-in link: %s", exc)

    async def link(self, request: Request) -> Response:
        language = self.workspace.language(request)
        token = request.path_params["token"]
        if request.method in SAFE_METHODS:
            try:
                email = await run_in_threadpool(self._check, token)
            except BadToken as exc:
                return self._bad_link(request, language, exc)
            return self.pages.page(request, "admin/confirm-sign-in.html.j2", language=language, email=email)
        if await self.pages.form(request) is None:
            return self.pages.rejected(request, language)
        try:
            secret = await run_in_threadpool(self._consume, token, request)
        except BadToken as exc:
            return self._bad_link(request, language, exc)
        return self._start(HOME, secret)

    def _bad_link(self, request: Request, language: str, exc: BadToken) -> Response:
        gettext = translations(language).gettext
        return self.pages.message(
            request, gettext("This link does not work"), exc, language=language, status=400
        )

    def _check(self, token: str) -> str:
        with self.site.transaction() as session:
            return signin.check(session, token, now=self.workspace.clock()).email

    def _consume(self, token: str, request: Request) -> str:
        with self.site.transaction() as session:
            user = signin.consume(session, token, now=self.workspace.clock())
            return self._new_session(session, user, request)

    def _new_session(self, session: Session, user: User, request: Request) -> str:
        return sessions.start(
            session,
            user.id or 0,
            now=self.workspace.clock(),
            idle=self.workspace.idle,
            user_agent=request.headers.get("user-agent", ""),
            ip=client_address(request),
            replacing=request.cookies.get(SESSION_COOKIE),
        )

    def _start(self, destination: str, secret: str) -> Response:
        response = RedirectResponse(destination, status_code=303)
        self.workspace.set_cookie(response, secret)
        return response

    # -- by password -----------------------------------------------------------------------

    async def password(self, request: Request) -> Response:
        language = self.workspace.language(request)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, language)
        email = str(form.get("email", ""))[:320]
        destination = safe_next(form.get("next"))
        client_ok, address_ok = await run_in_threadpool(self._allowed, request, email)
        if not client_ok:
            return self.pages.too_many(request, language)
        secret = await run_in_threadpool(self._with_password, email, form, request) if address_ok else None
        if secret is None:
            gettext = translations(language).gettext
            error = gettext("That address and password do not match an account that has a password.")
            return self._form_page(request, language, status=400, email=email, error=error, next=destination)
        return self._start(destination, secret)

    def _with_password(self, email: str, form: FormData, request: Request) -> str | None:
        password = str(form.get("password", ""))
        with self.site.transaction() as session:
            user = signin.with_password(session, email, password, now=self.workspace.clock())
            return self._new_session(session, user, request) if user is not None else None

    # -- signing out -----------------------------------------------------------------------

    async def sign_out(self, request: Request, signed: Signed) -> Response:
        return await self._sign_out(request, signed, everywhere=False)

    async def sign_out_everywhere(self, request: Request, signed: Signed) -> Response:
        return await self._sign_out(request, signed, everywhere=True)

    async def _sign_out(self, request: Request, signed: Signed, *, everywhere: bool) -> Response:
        if await self.pages.form(request) is None:
            return self.pages.rejected(request, signed.language)
        await run_in_threadpool(self._end, signed, everywhere)
        response = RedirectResponse(SIGN_IN, status_code=303)
        self.workspace.clear_cookie(response)
        return response

    def _end(self, signed: Signed, everywhere: bool) -> None:
        now = self.workspace.clock()
        with self.site.transaction() as session:
            if everywhere:
                ended = sessions.end_all(session, signed.actor.user_id, now=now)
                audit.record(
                    session, "sign-out-everywhere", actor=signed.actor.label, source="web", sessions=ended
                )
            else:
                sessions.end(session, signed.session_id, now=now)
                audit.record(session, "sign-out", actor=signed.actor.label, source="web")
