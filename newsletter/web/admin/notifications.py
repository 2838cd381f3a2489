"""Turning notifications off (the signed link in every digest) and on again (signed in).

GET  /admin/notifications                a signed-in person's notifications, on or off
POST /admin/notifications                turn them on or off (``notifications=on|off``)
GET  /admin/notifications/stop/{stop_token}   the digest's stop link: a page with one button
POST /admin/notifications/stop/{stop_token}   the button (CSRF-checked), or a mail provider's
                                         RFC 8058 one-click POST (no cookies: the signed
                                         token is the authority)

Opening the link (GET, as link scanners do) changes nothing. The token names the
person and is signed for this purpose only (``core/tokens.py``), so an unsubscribe
link of a newsletter cannot be replayed here, and nobody can forge one for someone else.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.core.errors import BadToken
from newsletter.core.i18n import translations
from newsletter.core.models import User
from newsletter.operations import notifications
from newsletter.web.admin.auth import Part, Signed
from newsletter.web.forms import SAFE_METHODS, limited_body
from newsletter.web.security import CSRF_COOKIE, CSRF_FIELD


class Notifications(Part):
    def routes(self) -> list[Route]:
        return [
            Route("/admin/notifications", self.workspace.signed_in(self.mine), methods=["GET", "POST"]),
            Route("/admin/notifications/stop/{stop_token}", self.stop, methods=["GET", "POST"]),
        ]

    # -- signed in -------------------------------------------------------------------------

    def _enabled(self, user_id: int) -> bool:
        with self.site.transaction() as session:
            return notifications.enabled(session, user_id)

    def _set(self, user_id: int, on: bool, actor: str) -> None:
        with self.site.transaction() as session:
            notifications.set_enabled(session, user_id, on, actor=actor, now=self.workspace.clock())

    async def mine(self, request: Request, signed: Signed) -> Response:
        gettext = translations(signed.language).gettext
        status, done, error = 200, "", ""
        user_id = signed.actor.user_id
        if request.method == "POST":
            form = await self.pages.form(request)
            if form is None:
                return self.pages.rejected(request, signed.language)
            choice = form.get("notifications")
            if choice not in ("on", "off"):
                status, error = 400, gettext("Choose whether you want notifications.")
            else:
                await run_in_threadpool(self._set, user_id, choice == "on", signed.actor.label)
                done = gettext("Saved.")
        return self.pages.page(
            request,
            "admin/notifications.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            enabled=await run_in_threadpool(self._enabled, user_id),
            done=done,
            error=error,
        )

    # -- the stop link ---------------------------------------------------------------------

    def _user(self, token: str) -> User:
        with self.site.transaction() as session:
            user = notifications.user_of(session, self.settings, token)
            session.expunge(user)
            return user

    async def stop(self, request: Request) -> Response:
        language = self.workspace.language(request)
        gettext = translations(language).gettext
        try:
            user = await run_in_threadpool(self._user, request.path_params["stop_token"])
        except BadToken as exc:
            if request.method == "POST":
                return PlainTextResponse(str(exc), status_code=400)
            title = gettext("This link does not work")
            return self.pages.message(request, title, exc, language=language, status=400)
        if request.method in SAFE_METHODS:
            return self.pages.page(
                request, "admin/notifications-stop.html.j2", language=language, email=user.email
            )
        actor = f"notifications-link:{user.email}"
        limited = await limited_body(request)
        form = await limited.form(max_files=0, max_fields=5)
        if form.get("List-Unsubscribe") == "One-Click":
            await run_in_threadpool(self._set, user.id or 0, False, actor)
            return PlainTextResponse("notifications turned off")
        token = form.get(CSRF_FIELD)
        if not self.pages.csrf.valid(
            request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None
        ):
            return self.pages.rejected(request, language)
        await run_in_threadpool(self._set, user.id or 0, False, actor)
        text = gettext(
            "%(email)s will get no more notifications. Turn them on again on your account's "
            "notifications page in the workspace."
        ) % {"email": user.email}
        return self.pages.message(request, gettext("Notifications turned off"), text, language=language)
