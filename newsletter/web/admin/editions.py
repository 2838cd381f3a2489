"""A group's editions in the workspace: the list, building, and the edition page with its changes.

GET  /admin/groups/{slug}/editions                       the editions, newest first, 50 a page
POST /admin/groups/{slug}/editions                       build the next edition (editions.edit)
GET  /admin/groups/{slug}/editions/{edition_id}          one edition: items, intro, subjects, figures, history
POST /admin/groups/{slug}/editions/{edition_id}/items    move up or down, drop, add an item (editions.edit)
POST /admin/groups/{slug}/editions/{edition_id}/content  the intro, a subject per language (editions.edit)
POST /admin/groups/{slug}/editions/{edition_id}/approve  approve it (editions.approve; four-eyes rule)

Anyone holding an editions permission on the group reads these pages; each change asks
its own permission. The work is the library's (``editions/build.py``, ``editions/editing.py``),
the same functions as ``newsletter editions ...``; a refusal it raises is shown on the
edition page with nothing changed: bad input 400, a stale form or a state that does
not allow the change 409.
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from newsletter.accounts.permissions import Actor, can, require, require_visible
from newsletter.core.errors import (
    DeliveryError,
    Forbidden,
    InputError,
    NewsletterError,
    NotFoundError,
    NothingToBuild,
    RenderError,
    StateError,
)
from newsletter.core.i18n import available_languages, base_language, translations
from newsletter.core.models import Edition, EditionStatus, Event, Group
from newsletter.editions import build as library
from newsletter.editions import editing
from newsletter.editions.render import Renderer
from newsletter.feedback.figures import figures
from newsletter.web.admin.auth import Part, Signed, Workspace

PAGE_SIZE = 50
HISTORY = 50
# Whoever holds one of these on the group sees its editions.
READERS = ("editions.edit", "editions.approve", "editions.send")


@dataclass(frozen=True)
class Page:
    """A page to render: the handlers read the database in a worker thread and return this;
    the template is rendered on the event loop, where the pages' gettext is installed per
    render (``Pages.page``) without another thread swapping it mid-page."""

    template: str
    language: str
    context: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Answer = Response | Page
Action = Callable[[Request, Signed, FormData], Answer]
# A refusal's status: bad input, a stale form or a state that forbids the act, a relay
# that refused the test copy; "nothing to build" is an answer, not an error.
REFUSALS: tuple[tuple[type[NewsletterError], int], ...] = (
    (InputError, 400),
    (RenderError, 400),
    (StateError, 409),
    (DeliveryError, 502),
    (NothingToBuild, 200),
)


def require_reader(actor: Actor, slug: str, groups: object) -> None:
    """Return if the actor may see the group's editions; 404 for a hidden or unknown group, else 403."""
    require_visible(actor, slug)
    if slug not in groups:  # type: ignore[operator]
        raise NotFoundError(f"no group {slug!r}")
    if not any(can(actor, permission, slug) for permission in READERS):
        raise Forbidden("you may not see this group's editions")


def form_int(form: FormData, name: str) -> int:
    value = form.get(name)
    try:
        return int(str(value))
    except ValueError:
        raise InputError(f"the form has no valid {name}; reload the page and try again") from None


class EditionPages(Part):
    """What the edition pages share: the site, the renderer, the checks, the edition page."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace)
        self.renderer = Renderer(self.settings)

    # -- handlers: permission first, the work in a thread, refusals as messages on the page --

    def view(self, handler: Callable[[Request, Signed], Answer]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request, signed: Signed) -> Response:
            require_reader(signed.actor, request.path_params["slug"], self.settings.groups)
            return self.respond(request, await run_in_threadpool(handler, request, signed))

        return self.workspace.signed_in(endpoint)

    def action(self, permission: str, handler: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request, signed: Signed) -> Response:
            slug = request.path_params["slug"]
            require_reader(signed.actor, slug, self.settings.groups)
            require(signed.actor, permission, slug)
            form = await self.pages.form(request)
            if form is None:
                return self.pages.rejected(request, signed.language)
            return self.respond(
                request, await run_in_threadpool(self._guarded, handler, request, signed, form)
            )

        return self.workspace.signed_in(endpoint)

    def respond(self, request: Request, answer: Answer) -> Response:
        if isinstance(answer, Response):
            return answer
        response = self.pages.page(
            request, answer.template, language=answer.language, status=answer.status, **answer.context
        )
        response.headers.update(answer.headers)
        return response

    def _guarded(self, handler: Action, request: Request, signed: Signed, form: FormData) -> Answer:
        """The handler's answer, or its refusal as a message on the page (nothing was changed)."""
        try:
            return handler(request, signed, form)
        except (NotFoundError, Forbidden):
            raise
        except NewsletterError as exc:
            status = next((code for kind, code in REFUSALS if isinstance(exc, kind)), 500)
            if "edition_id" in request.path_params:
                return self.edition_page(request, signed, error=exc, status=status)
            return self.list_page(request, signed, error=exc, status=status)

    def attempt(self, work: Callable[[Session], Any]) -> Any:
        """Run ``work`` in one transaction (a refusal it raises rolls everything back)."""
        with self.site.transaction() as session:
            return work(session)

    def edition(self, session: Session, request: Request) -> Edition:
        """The path's edition, if it belongs to the path's group (else 404)."""
        try:
            edition_id = int(request.path_params["edition_id"])
        except ValueError:
            raise NotFoundError("no such edition") from None
        edition = session.get(Edition, edition_id)
        group = session.get(Group, edition.group_id) if edition is not None else None
        if edition is None or group is None or group.slug != request.path_params["slug"]:
            raise NotFoundError(f"no edition #{edition_id} in this group")
        return edition

    def group_view(self, slug: str) -> dict[str, object]:
        config = self.settings.groups[slug]
        return {
            "slug": slug,
            "name": config.name,
            "brand_color": config.brand_color,
            "timezone": config.timezone,
        }

    def edition_url(self, request: Request, suffix: str = "") -> str:
        slug, edition_id = request.path_params["slug"], request.path_params["edition_id"]
        return f"/admin/groups/{slug}/editions/{edition_id}{suffix}"

    def see_page(self, request: Request) -> Response:
        """After a change: back to the edition page (a GET, so a reload posts nothing twice)."""
        return RedirectResponse(self.edition_url(request), status_code=303)

    # -- the list ----------------------------------------------------------------------------

    def list_page(
        self, request: Request, signed: Signed, *, error: str | NewsletterError = "", status: int = 200
    ) -> Page:
        slug = request.path_params["slug"]
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        with self.site.transaction() as session:
            total = library.count_editions(session, self.settings, slug)
            rows = library.list_editions(
                session, self.settings, group=slug, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
            )
        return Page(
            "admin/editions.html.j2",
            signed.language,
            status=status,
            context={
                "actor": signed.actor,
                "group": self.group_view(slug),
                "rows": rows,
                "page": page,
                "pages": max(1, -(-total // PAGE_SIZE)),
                "error": error,
                "may_edit": can(signed.actor, "editions.edit", slug),
            },
        )

    # -- the edition page ----------------------------------------------------------------------

    def edition_page(
        self,
        request: Request,
        signed: Signed,
        *,
        error: str | NewsletterError = "",
        notice: str = "",
        status: int = 200,
    ) -> Page:
        slug = request.path_params["slug"]
        with self.site.transaction() as session:
            edition = self.edition(session, request)
            assert edition.id is not None
            items = editing.items_of(session, edition.id)
            draft = edition.status == EditionStatus.DRAFT
            addable = editing.addable(session, self.settings, edition) if draft else []
            numbers = figures(session, edition)
            history = list(
                session.exec(
                    select(Event)
                    .where(col(Event.edition_id) == edition.id, col(Event.subscriber_id).is_(None))
                    .order_by(col(Event.id).desc())
                    .limit(HISTORY)
                )
            )
            session.expunge_all()
        group_language = base_language(self.settings.group(slug).language)
        languages = [group_language, *sorted(available_languages() - {group_language})]
        gettext = translations(signed.language).gettext
        if not error and self.settings.group(slug).require_second_person and draft:
            notice = notice or gettext("This group asks for a second person to approve an edition.")
        return Page(
            "admin/edition.html.j2",
            signed.language,
            status=status,
            context={
                "actor": signed.actor,
                "group": self.group_view(slug),
                "edition": edition,
                "items": items,
                "addable": addable,
                "figures": numbers,
                "history": history,
                "languages": languages,
                "subjects": library.subjects_of(edition),
                "draft": draft,
                "error": error,
                "notice": notice,
                "scheduled": edition.scheduled_at.astimezone(self._zone(slug))
                if edition.scheduled_at
                else None,
                "may": {name.split(".")[1]: can(signed.actor, name, slug) for name in READERS},
                "url": self.edition_url(request),
                "detail": history_detail,
            },
        )

    def _zone(self, slug: str) -> ZoneInfo:
        return ZoneInfo(self.settings.group(slug).timezone)


class Editions(EditionPages):
    def routes(self) -> list[Route]:
        base = "/admin/groups/{slug}/editions"
        one = base + "/{edition_id}"
        return [
            Route(base, self.view(self.list_page), methods=["GET"]),
            Route(base, self.action("editions.edit", self.build), methods=["POST"]),
            Route(one, self.view(self.edition_page), methods=["GET"]),
            Route(one + "/items", self.action("editions.edit", self.change_items), methods=["POST"]),
            Route(one + "/content", self.action("editions.edit", self.write), methods=["POST"]),
            Route(one + "/approve", self.action("editions.approve", self.approve), methods=["POST"]),
        ]

    def build(self, request: Request, signed: Signed, form: FormData) -> Response:
        slug = request.path_params["slug"]
        edition_id = self.attempt(
            lambda session: (
                library.build(session, self.settings, self.renderer, slug, actor=signed.actor.label).id
            )
        )
        return RedirectResponse(f"/admin/groups/{slug}/editions/{edition_id}", status_code=303)

    def change_items(self, request: Request, signed: Signed, form: FormData) -> Response:
        action = str(form.get("action") or "")
        steps = {"up": -1, "down": 1}
        if action not in {*steps, "drop", "add"}:
            raise InputError("choose up, down, drop or add")

        def work(session: Session) -> None:
            edition = self.edition(session, request)
            item_id, version = form_int(form, "item"), form_int(form, "version")
            args = (session, self.settings, self.renderer, edition.id or 0, item_id)
            actor = signed.actor.label
            if action in steps:
                editing.move(*args, steps[action], version=version, actor=actor)
            elif action == "drop":
                editing.drop(*args, version=version, actor=actor)
            else:
                editing.add(*args, version=version, actor=actor)

        self.attempt(work)
        return self.see_page(request)

    def write(self, request: Request, signed: Signed, form: FormData) -> Response:
        subjects = {
            language: str(form.get(f"subject_{language}") or "") for language in sorted(available_languages())
        }

        def work(session: Session) -> None:
            edition = self.edition(session, request)
            editing.write(
                session,
                self.settings,
                self.renderer,
                edition.id or 0,
                intro_md=str(form.get("intro") or ""),
                subjects=subjects,
                version=form_int(form, "version"),
                actor=signed.actor.label,
            )

        self.attempt(work)
        return self.see_page(request)

    def approve(self, request: Request, signed: Signed, form: FormData) -> Response:
        def work(session: Session) -> None:
            edition = self.edition(session, request)
            library.approve(
                session,
                self.settings,
                self.renderer,
                edition.id or 0,
                actor=signed.actor.label,
                version=form_int(form, "version"),
            )

        self.attempt(work)
        return self.see_page(request)


def history_detail(event: Event) -> str:
    """An audit event's detail in one short line for the history table."""
    detail = json.loads(event.detail or "{}")
    return ", ".join(f"{k} {v}" for k, v in sorted(detail.items()) if v not in (None, "", [], {}))
