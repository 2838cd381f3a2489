"""An edition on its way out: preview, a test to oneself, send now or at a moment, progress, pause, resume.

GET  .../editions/{edition_id}/preview    the real email at 375 and 600 px (iframes) and its text part
GET  .../editions/{edition_id}/email      the email's HTML alone, for those iframes (framed by the site only)
POST .../editions/{edition_id}/test       one copy marked [TEST] to the signed-in person (editions.edit)
POST .../editions/{edition_id}/send       send now (editions.send)
POST .../editions/{edition_id}/schedule   send at a moment in the group's time zone, or not (editions.send)
GET  .../editions/{edition_id}/progress   delivered / deferred / failed while it goes out (htmx polls it)
POST .../editions/{edition_id}/pause      stop handing out messages (editions.send)
POST .../editions/{edition_id}/resume     go on where it stopped (editions.send)

Send and resume run the delivery runner (``delivery/runner.py``), the very one behind
``editions send``, in a background thread of the web process, so the request answers at
once. The runner's lease is taken in the request, before the thread starts: a second
press, or a CLI send of the same edition, is refused on the page in one line. A thread
rather than a hand-over to ``newsletter worker``: a site need not run a worker, and
nothing is lost if the web process dies mid-send, since the edition stays ``sending``,
its lease lapses, and the next ``run-due`` tick, daemon or worker resumes it from the
outbox (nobody gets a second copy but the messages in flight).
"""

import html as markup
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter.accounts.permissions import can
from newsletter.core.errors import (
    DeliveryError,
    InputError,
    LeaseHeld,
    NewsletterError,
    RenderError,
    StateError,
)
from newsletter.core.i18n import available_languages, base_language, reader_language, translations
from newsletter.core.messages import Message
from newsletter.core.models import EditionStatus
from newsletter.core.site import Site
from newsletter.delivery.lease import describe, holder
from newsletter.delivery.outgoing import send_test
from newsletter.delivery.runner import Runner, pause
from newsletter.delivery.transports import Transport
from newsletter.editions import build as library
from newsletter.editions import editing
from newsletter.editions.render import Renderer
from newsletter.feedback.figures import figures
from newsletter.web.admin.auth import Signed, Workspace
from newsletter.web.admin.editions import EditionPages, Editions, Page
from newsletter.web.security import CONTENT_SECURITY_POLICY

log = logging.getLogger(__name__)

# The email in its iframe: its own inline styles and remote images, no script, no form,
# and only this site may frame it.
EMAIL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https: data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
# The preview page itself: the workspace's policy, plus frames from the site.
PREVIEW_POLICY = CONTENT_SECURITY_POLICY + "; frame-src 'self'"
WIDTHS = (375, 600)
# Seconds between two looks of the progress view (htmx).
POLL_SECONDS = 3


class Sender:
    """Sends editions in background threads of the web process, each through its own runner."""

    def __init__(self, site: Site, transport_factory: Callable[[], Transport]) -> None:
        self.site = site
        self.transport_factory = transport_factory
        self.renderer = Renderer(site.settings)
        # The last send of each edition that stopped on an error, for its progress page.
        # Why a send stopped, shown on the progress page in the reader's language (``Pages.page``).
        self.errors: dict[int, str | NewsletterError] = {}

    def start(self, edition_id: int, actor: str) -> None:
        """Take the edition's lease now (:class:`LeaseHeld` if another sends it), then send in a thread."""
        runner = Runner(self.site, self.renderer, self.transport_factory(), actor=actor)
        try:
            runner.reserve(edition_id)
        except BaseException:
            runner.transport.close()
            raise
        self.errors.pop(edition_id, None)
        thread = threading.Thread(
            target=self._send, args=(runner, edition_id), name=f"send-edition-{edition_id}", daemon=True
        )
        thread.start()

    def _send(self, runner: Runner, edition_id: int) -> None:
        try:
            result = runner.send(edition_id)
            log.info("edition #%s %s: sent %s", edition_id, result.status, result.report.sent)
        except NewsletterError as exc:
            self.errors[edition_id] = exc
            log.warning("edition #%s: the send stopped: %s", edition_id, exc)
        except Exception as exc:  # a bug: the progress page says so, the log has the traceback
            self.errors[edition_id] = f"{type(exc).__name__}: {exc}"
            log.exception("edition #%s: the send failed", edition_id)


class Sending(EditionPages):
    def __init__(self, workspace: Workspace, sender: Sender) -> None:
        super().__init__(workspace)
        self.sender = sender

    def routes(self) -> list[Route]:
        one = "/admin/groups/{slug}/editions/{edition_id}"
        return [
            Route(one + "/preview", self.view(self.preview), methods=["GET"]),
            Route(one + "/email", self.view(self.email), methods=["GET"]),
            Route(one + "/test", self.action("editions.edit", self.test), methods=["POST"]),
            Route(one + "/send", self.action("editions.send", self.send), methods=["POST"]),
            Route(one + "/schedule", self.action("editions.send", self.schedule), methods=["POST"]),
            Route(one + "/progress", self.view(self.progress), methods=["GET"]),
            Route(one + "/pause", self.action("editions.send", self.pause), methods=["POST"]),
            Route(one + "/resume", self.action("editions.send", self.send), methods=["POST"]),
        ]

    # -- preview -----------------------------------------------------------------------------

    def _language(self, request: Request) -> str:
        slug = request.path_params["slug"]
        wanted = request.query_params.get("language")
        if wanted and base_language(wanted) in available_languages():
            return base_language(wanted)
        return base_language(self.settings.group(slug).language)

    def _rendered(self, request: Request, language: str) -> tuple[str, str]:
        with self.site.transaction() as session:
            edition = self.edition(session, request)
            content = library.content(session, self.settings, edition)
        rendered = self.renderer.render(
            content, reader_language(language, content.group.language), allow_large=True
        )
        return library.neutral(rendered, self.settings)

    def preview(self, request: Request, signed: Signed) -> Page:
        language = self._language(request)
        try:
            _, text = self._rendered(request, language)
            error: str | RenderError = ""
        except RenderError as exc:
            text, error = "", exc
        return Page(
            "admin/edition-preview.html.j2",
            signed.language,
            status=200 if not error else 409,
            headers={"content-security-policy": PREVIEW_POLICY},
            context={
                "actor": signed.actor,
                "group": self.group_view(request.path_params["slug"]),
                "edition_id": request.path_params["edition_id"],
                "url": self.edition_url(request),
                "email_language": language,
                "languages": sorted(available_languages()),
                "widths": WIDTHS,
                "text": text,
                "error": error,
            },
        )

    def email(self, request: Request, signed: Signed) -> Response:
        try:
            html, _ = self._rendered(request, self._language(request))
        except RenderError as exc:
            html = f"<p>{markup.escape(str(exc))}</p>"
        return HTMLResponse(
            html,
            headers={"content-security-policy": EMAIL_POLICY, "x-frame-options": "SAMEORIGIN"},
        )

    # -- a test to oneself -------------------------------------------------------------------

    def test(self, request: Request, signed: Signed, form: FormData) -> Page:
        language = self._language(request)
        wanted = str(form.get("language") or "")
        if wanted and base_language(wanted) in available_languages():
            language = base_language(wanted)
        with self.site.transaction() as session:
            edition_id = self.edition(session, request).id or 0
        try:
            send_test(
                self.site,
                self.renderer,
                self.sender.transport_factory(),
                edition_id,
                signed.actor.email,
                actor=signed.actor.label,
                language=language,
            )
        except DeliveryError as exc:
            raise DeliveryError(
                Message("the test copy could not be sent: {reason}", reason=exc.msg), code=exc.code
            ) from None
        gettext = translations(signed.language).gettext
        return self.edition_page(
            request,
            signed,
            notice=gettext("A test copy is on its way to %(email)s.") % {"email": signed.actor.email},
        )

    # -- send, schedule, pause, resume -----------------------------------------------------------

    def send(self, request: Request, signed: Signed, form: FormData) -> Response:
        with self.site.transaction() as session:
            edition_id = self.edition(session, request).id or 0
        try:
            self.sender.start(edition_id, signed.actor.label)
        except LeaseHeld as held:
            raise StateError(
                "edition #{id} is already being sent by {owner} (since {since} UTC); "
                "its progress page shows how far it is",
                id=edition_id,
                owner=describe(held.owner),
                since=f"{held.since:%H:%M:%S}",
            ) from None
        return RedirectResponse(self.edition_url(request, "/progress"), status_code=303)

    def schedule(self, request: Request, signed: Signed, form: FormData) -> Response:
        slug = request.path_params["slug"]
        value = str(form.get("at") or "").strip()
        at: datetime | None = None
        if value:
            try:
                local = datetime.fromisoformat(value)
            except ValueError:
                raise InputError(
                    "'{value}' is not a date and time such as 2026-12-24T09:00", value=value
                ) from None
            if local.tzinfo is None:
                local = local.replace(tzinfo=ZoneInfo(self.settings.group(slug).timezone))
            at = local

        def work(session: Session) -> None:
            edition = self.edition(session, request)
            editing.schedule(
                session, edition.id or 0, at, actor=signed.actor.label, now=self.workspace.clock()
            )

        self.attempt(work)
        return self.see_page(request)

    def pause(self, request: Request, signed: Signed, form: FormData) -> Response:
        with self.site.transaction() as session:
            edition_id = self.edition(session, request).id or 0
        pause(self.site, edition_id, actor=signed.actor.label)
        return RedirectResponse(self.edition_url(request, "/progress"), status_code=303)

    # -- progress ------------------------------------------------------------------------------

    def progress(self, request: Request, signed: Signed) -> Page:
        slug = request.path_params["slug"]
        with self.site.transaction() as session:
            edition = self.edition(session, request)
            numbers = figures(session, edition)
            status = EditionStatus(edition.status)
            edition_id = edition.id or 0
            # Send now takes the lease before its thread moves the edition to sending: an
            # approved edition whose lease is held is starting, and its page must poll too.
            held = holder(session, edition_id)
            starting = status == EditionStatus.APPROVED and held is not None and not held.lapsed()
        fragment = request.headers.get("hx-request") == "true"
        return Page(
            "admin/_progress.html.j2" if fragment else "admin/edition-progress.html.j2",
            signed.language,
            context={
                "actor": signed.actor,
                "group": self.group_view(slug),
                "edition_id": edition_id,
                "state": str(status),
                "live": status == EditionStatus.SENDING or starting,
                "figures": numbers,
                "error": self.sender.errors.get(edition_id, ""),
                "url": self.edition_url(request),
                "poll": POLL_SECONDS,
                "may_send": can(signed.actor, "editions.send", slug),
            },
        )


def editions_routes(
    workspace: Workspace, transport_factory: Callable[[], Transport], sender: Sender | None = None
) -> list[Route]:
    """The editions pages and the sending ones, sharing one background sender (``sender``, or a new one)."""
    return [
        *Editions(workspace).routes(),
        *Sending(workspace, sender or Sender(workspace.site, transport_factory)).routes(),
    ]
