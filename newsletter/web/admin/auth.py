"""Who is signed in: the session cookie, the request's Actor, and the answer to anonymous requests.

The cookie holds a random session id (its hash is in the database, ``accounts/sessions.py``).
It is ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (a cross-site POST does not
carry it), limited to ``/admin``, and ``Secure`` when the site's ``base_url`` is https:
a site served on plain http (a developer's machine) gets a cookie without ``Secure``,
which browsers would otherwise refuse to send back; tests of an https site talk to the
app as ``https://testserver``.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.accounts import sessions, users
from newsletter.accounts.permissions import Actor
from newsletter.core.errors import Forbidden, NotFoundError
from newsletter.core.i18n import translations
from newsletter.core.settings import Settings
from newsletter.core.site import LiveSite, Site
from newsletter.web.pages import Pages

SESSION_COOKIE = "nl_session"
COOKIE_PATH = "/admin"
SIGN_IN = "/admin/sign-in"
HOME = "/admin/"


@dataclass(frozen=True)
class Signed:
    """The signed-in person behind a request: their Actor, their session's row id, the page language."""

    actor: Actor
    session_id: int
    language: str


Handler = Callable[[Request, Signed], Awaitable[Response]]


class Workspace:
    """What every workspace page shares: the site, the pages, the clock, and the session cookie."""

    def __init__(self, site: Site, pages: Pages, clock: Callable[[], datetime]) -> None:
        # The sources follow newsletter.toml as admins edit it (core/site.py LiveSite).
        self.live = LiveSite(site)
        self.pages = pages
        self.clock = clock
        self.idle = timedelta(minutes=self.settings.accounts.session_idle_minutes)
        self.secure = self.settings.site.base_url.startswith("https://")

    @property
    def site(self) -> Site:
        """The site, with the sources ``newsletter.toml`` declares now."""
        return self.live.current()

    @property
    def settings(self) -> Settings:
        return self.site.settings

    def language(self, request: Request) -> str:
        return self.pages.language(request, self.settings.site.language)

    # -- the cookie ------------------------------------------------------------------------

    def set_cookie(self, response: Response, secret: str) -> None:
        response.set_cookie(
            SESSION_COOKIE, secret, path=COOKIE_PATH, httponly=True, secure=self.secure, samesite="lax"
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path=COOKIE_PATH, httponly=True, secure=self.secure, samesite="lax"
        )

    # -- the request's person --------------------------------------------------------------

    async def current(self, request: Request) -> Signed | None:
        """The signed-in person, or None (no cookie, an ended session, a removed or inactive user)."""
        secret = request.cookies.get(SESSION_COOKIE)
        if not secret:
            return None
        found = await run_in_threadpool(self._resume, secret)
        if found is None:
            return None
        actor, session_id = found
        return Signed(actor, session_id, self.language(request))

    def _resume(self, secret: str) -> tuple[Actor, int] | None:
        with self.site.transaction() as session:
            live = sessions.resume(session, secret, now=self.clock(), idle=self.idle)
            if live is None:
                return None
            actor = users.load_actor(session, self.settings, live[0])
        if actor is None or not actor.active:
            return None
        return actor, live[1]

    def signed_in(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint that sends anonymous requests to sign in and maps refusals to 404 and 403."""

        async def endpoint(request: Request) -> Response:
            signed = await self.current(request)
            if signed is None:
                return RedirectResponse(f"{SIGN_IN}?next={quote(request.url.path)}", status_code=303)
            try:
                return await handler(request, signed)
            except NotFoundError:
                return self.refusal(request, signed.language, 404)
            except Forbidden:
                return self.refusal(request, signed.language, 403)

        return endpoint

    def refusal(self, request: Request, language: str, status: int) -> Response:
        gettext = translations(language).gettext
        if status == 404:
            title, text = gettext("Not found"), gettext("There is no such page in your workspace.")
        else:
            title = gettext("Not allowed")
            text = gettext("Your role does not allow this. Ask an admin if you need to do it.")
        return self.pages.message(request, title, text, language=language, status=status)


def safe_next(value: object) -> str:
    """Where to go after signing in: a workspace path only (never another site)."""
    text = str(value or "")
    if text.startswith(HOME) and not text.startswith("//") and "\\" not in text and "//" not in text:
        return text
    return HOME


class Part:
    """A part of the workspace (items, editions, subscribers, ...): its pages' shared handles."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.pages = workspace.pages

    @property
    def site(self) -> Site:
        """The workspace's site as it is now (its sources follow ``newsletter.toml``)."""
        return self.workspace.site

    @property
    def settings(self) -> Settings:
        return self.workspace.site.settings
