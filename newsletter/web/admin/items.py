"""A group's items: the queue, the new-item form with its preview, and each item's page.

GET  /admin/groups/{slug}/items                       the queue (status, topic, source filters; 50 a page)
GET  /admin/groups/{slug}/items/new  POST             the form; POST proposes (or previews, without JS)
POST /admin/groups/{slug}/items/preview               the summary as the email shows it (an htmx fragment)
GET  /admin/groups/{slug}/items/{item_id}  POST       provenance, history, the edit form; POST saves
POST /admin/groups/{slug}/items/{item_id}/review      approve, reject, or back to proposed

The handlers only read the form and show the answer; who may do what, the checks and
the changes live in ``pool/review.py`` and ``pool/items.py`` (the CLI's functions).
A contributor's queue shows their own proposals only. Forms carry the item's version
(``updated_at``): a form made before someone else's change is refused and changes nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter.accounts.permissions import Actor, can, require, require_visible
from newsletter.core.errors import InputError, NewsletterError, NotFoundError, StateError
from newsletter.core.i18n import translations
from newsletter.core.language import normalize_language
from newsletter.core.messages import reason, translate
from newsletter.core.models import Item, ItemKind, ItemStatus
from newsletter.core.states import ITEM
from newsletter.pool import items as pool
from newsletter.pool import review
from newsletter.pool.items import ItemDraft, as_utc
from newsletter.pool.richtext import markdown_to_html
from newsletter.web.admin.auth import Part, Signed

PER_PAGE = 50
# The form's own fields plus one box per group: room for a site with many groups.
MAX_FIELDS = 200
DECISIONS = {"approve": ItemStatus.APPROVED, "reject": ItemStatus.REJECTED, "propose": ItemStatus.PROPOSED}


@dataclass
class ItemForm:
    """What the form holds, as typed (to show again after a mistake)."""

    title: str = ""
    url: str = ""
    summary: str = ""
    kind: str = ItemKind.NEWS.value
    topic: str = ""
    language: str = ""
    start: str = ""
    end: str = ""
    place: str = ""
    deadline: str = ""
    groups: list[str] = field(default_factory=list)

    @classmethod
    def posted(cls, form: FormData) -> "ItemForm":
        def text(name: str) -> str:
            value = form.get(name)
            return value.strip() if isinstance(value, str) else ""

        summary = form.get("summary")
        return cls(
            title=text("title"),
            url=text("url"),
            summary=summary if isinstance(summary, str) else "",
            kind=text("kind") or ItemKind.NEWS.value,
            topic=text("topic"),
            language=text("language"),
            start=text("start"),
            end=text("end"),
            place=text("place"),
            deadline=text("deadline"),
            groups=[g for g in form.getlist("groups") if isinstance(g, str)],
        )

    @classmethod
    def of(cls, item: Item, groups: list[str], zone: str) -> "ItemForm":
        return cls(
            title=item.title,
            url=item.url or "",
            summary=item.summary_md,
            kind=str(item.kind),
            topic=item.topic,
            language=item.language,
            start=_local(item.event_start, zone),
            end=_local(item.event_end, zone),
            place=item.event_place or "",
            deadline=item.deadline.isoformat() if item.deadline else "",
            groups=groups,
        )

    def fields(self, zone: str, default_language: str) -> dict[str, Any]:
        """The item's fields; a date or time that cannot be read is an :class:`InputError`."""
        try:
            kind = ItemKind(self.kind)
        except ValueError:
            raise InputError("unknown kind '{kind}'", kind=self.kind) from None
        try:
            language = normalize_language(self.language or default_language)
        except ValueError as exc:
            raise InputError(reason(exc)) from None
        return {
            "title": self.title,
            "url": self.url or None,
            "summary_md": self.summary.replace("\r\n", "\n"),
            "kind": kind,
            "topic": self.topic,
            "language": language,
            "event_start": _moment(self.start, zone, "the start"),
            "event_end": _moment(self.end, zone, "the end"),
            "event_place": self.place or None,
            "deadline": _day(self.deadline),
        }


def _local(value: datetime | None, zone: str) -> str:
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M") if value else ""


def _moment(text: str, zone: str, what: str) -> datetime | None:
    """A date and time as a browser sends it (2026-12-03T14:00, in the group's zone) or with an offset."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            "{what} '{text}' is not a date and time such as 2026-12-03T14:00", what=what, text=text
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return as_utc(value, what=what)


def _day(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError("the deadline '{text}' is not a date such as 2027-01-15", text=text) from None


def _page_number(text: str | None) -> int:
    try:
        return max(1, int(text or 1))
    except ValueError:
        return 1


class Items(Part):
    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        base = "/admin/groups/{slug}/items"
        return [
            Route(base, signed_in(self.queue)),
            Route(base + "/new", signed_in(self.new), methods=["GET", "POST"]),
            Route(base + "/preview", signed_in(self.preview), methods=["POST"]),
            Route(base + "/{item_id}", signed_in(self.item), methods=["GET", "POST"]),
            Route(base + "/{item_id}/review", signed_in(self.review), methods=["POST"]),
        ]

    # -- shared ------------------------------------------------------------------------------

    def _group(self, request: Request, signed: Signed) -> tuple[str, str]:
        """The group's slug and time zone; 404 unless it exists and the person holds anything on it."""
        slug = request.path_params["slug"]
        require_visible(signed.actor, slug)
        if slug not in self.settings.groups:
            raise NotFoundError("no group '{group}'", group=slug)
        return slug, self.settings.groups[slug].timezone

    def _render(
        self, request: Request, signed: Signed, template: str, status: int = 200, **context: Any
    ) -> Response:
        slug = request.path_params["slug"]
        config = self.settings.groups[slug]
        for name in ("error", "preview"):
            context.setdefault(name, "")
        context.setdefault("saved", False)
        return self.pages.page(
            request,
            f"admin/{template}",
            language=signed.language,
            status=status,
            actor=signed.actor,
            group={"slug": slug, "name": config.name, "brand_color": config.brand_color},
            zone=config.timezone,
            kinds=[k.value for k in ItemKind],
            **context,
        )

    def _choices(self, signed: Signed, permission: str) -> list[tuple[str, str]]:
        """The target boxes the form offers: (slug, name), with ``*`` first if every group is allowed."""
        actor = signed.actor
        offered = [
            (slug, self.settings.groups[slug].name)
            for slug in review.targetable(actor, self.settings, permission)
        ]
        if review.everywhere(actor, self.settings, permission):
            gettext = translations(signed.language).gettext
            offered.insert(0, ("*", gettext("Every group")))
        return offered

    def _error(self, signed: Signed, exc: NewsletterError) -> str:
        return translate(exc.msg, translations(signed.language))

    # -- the queue ---------------------------------------------------------------------------

    async def queue(self, request: Request, signed: Signed) -> Response:
        slug, _ = self._group(request, signed)
        query = request.query_params
        filters = {name: query.get(name) or None for name in ("status", "topic", "source")}
        if filters["status"] not in (None, *[s.value for s in ItemStatus]):
            filters["status"] = None
        page = _page_number(query.get("page"))
        reviewer = review.reviews(signed.actor, slug)
        if not reviewer:
            require(signed.actor, review.PROPOSE, slug)
        editor = None if reviewer else sorted(signed.actor.identities)

        def load() -> tuple[pool.QueuePage, list[str], list[str]]:
            with self.site.transaction() as session:
                found = pool.queue(
                    session, self.settings, slug, **filters, editor=editor, page=page, per_page=PER_PAGE
                )
                return found, pool.topics(session), pool.source_names(session)

        found, topics, sources = await run_in_threadpool(load)
        kept = {k: v for k, v in filters.items() if v}
        return self._render(
            request,
            signed,
            "items.html.j2",
            found=found,
            filters=filters,
            topics=topics,
            sources=sources,
            statuses=[s.value for s in ItemStatus],
            reviewer=reviewer,
            may_propose=can(signed.actor, review.PROPOSE, slug),
            page_link=lambda number: "?" + urlencode({**kept, "page": number}),
        )

    # -- a new item --------------------------------------------------------------------------

    async def new(self, request: Request, signed: Signed) -> Response:
        slug, zone = self._group(request, signed)
        require(signed.actor, review.PROPOSE, slug)
        choices = self._choices(signed, review.PROPOSE)
        if request.method == "GET":
            blank = ItemForm(language=self.settings.groups[slug].language, groups=[slug])
            return self._render(request, signed, "item-new.html.j2", form=blank, choices=choices)
        posted = await self.pages.form(request, max_fields=MAX_FIELDS)
        if posted is None:
            return self.pages.rejected(request, signed.language)
        form = ItemForm.posted(posted)
        language = self.settings.groups[slug].language
        if posted.get("action") == "preview":
            preview = markdown_to_html(form.summary)
            return self._render(
                request, signed, "item-new.html.j2", form=form, choices=choices, preview=preview
            )

        def store() -> int:
            draft = ItemDraft(**form.fields(zone, language), groups=form.groups or None)
            with self.site.transaction() as session:
                item = review.propose(session, self.settings, signed.actor, slug, draft)
                return item.id or 0

        try:
            item_id = await run_in_threadpool(store)
        except InputError as exc:
            error = self._error(signed, exc)
            return self._render(
                request, signed, "item-new.html.j2", 400, form=form, choices=choices, error=error
            )
        return RedirectResponse(f"/admin/groups/{slug}/items/{item_id}?saved=1", status_code=303)

    async def preview(self, request: Request, signed: Signed) -> Response:
        """The summary rendered by the email's own code, as a fragment for htmx to put in place."""
        slug, _ = self._group(request, signed)
        require(signed.actor, review.PROPOSE, slug)
        posted = await self.pages.form(request, max_fields=MAX_FIELDS)
        if posted is None:
            return self.pages.rejected(request, signed.language)
        summary = posted.get("summary")
        return HTMLResponse(markdown_to_html(summary if isinstance(summary, str) else ""))

    # -- one item ----------------------------------------------------------------------------

    def _item_id(self, request: Request) -> int:
        text = request.path_params["item_id"]
        if not text.isdigit():
            raise NotFoundError("no item '{text}'", text=text)
        return int(text)

    def _show(
        self,
        request: Request,
        signed: Signed,
        slug: str,
        item_id: int,
        *,
        status: int = 200,
        form: ItemForm | None = None,
        version: str = "",
        **context: Any,
    ) -> Response:
        """The item page (run in a worker thread): provenance, history, and the forms the person may use."""
        zone = self.settings.groups[slug].timezone
        actor = signed.actor
        with self.site.transaction() as session:
            item = review.item_for(session, self.settings, actor, slug, item_id)
            targets = pool.target_slugs(session, item)
            editable = review.may_edit(actor, slug, item)
            reviewer = review.reviews(actor, slug)
            permission = review.REVIEW if reviewer else review.PROPOSE
            choices = self._choices(signed, permission)
            # The edit form's preview starts as its summary (stored, or as typed), as the email shows it.
            if not context.get("preview"):
                context["preview"] = markdown_to_html(form.summary) if form else item.summary_html
            # Every group: its box, and each group's box, ticked.
            shown = ["*", *(s for s, _ in choices)] if "*" in targets else targets
            return self._render(
                request,
                signed,
                "item.html.j2",
                status,
                item=item,
                # After a mistake, the form keeps the version it was made from.
                version=version or pool.version(item),
                targets=targets,
                source=review.source_of(session, item),
                history=review.history(session, item),
                editable=editable,
                reviewer=reviewer,
                decisions=[d for d, s in DECISIONS.items() if s in ITEM[item.status]] if reviewer else [],
                choices=choices,
                form=form or ItemForm.of(item, shown, zone),
                **context,
            )

    async def item(self, request: Request, signed: Signed) -> Response:
        slug, zone = self._group(request, signed)
        item_id = self._item_id(request)
        if request.method == "GET":
            saved = bool(request.query_params.get("saved"))
            return await run_in_threadpool(self._show, request, signed, slug, item_id, saved=saved)
        # Refuse what the person may not do before reading what they sent.
        await run_in_threadpool(self._may_edit, signed.actor, slug, item_id)
        posted = await self.pages.form(request, max_fields=MAX_FIELDS)
        if posted is None:
            return self.pages.rejected(request, signed.language)
        form = ItemForm.posted(posted)
        if posted.get("action") == "preview":
            preview = markdown_to_html(form.summary)
            return await run_in_threadpool(
                self._show, request, signed, slug, item_id, form=form, preview=preview
            )

        def store() -> None:
            expected = pool.parse_version(str(posted.get("version", "")))
            changes = form.fields(zone, self.settings.groups[slug].language)
            with self.site.transaction() as session:
                review.edit(
                    session,
                    self.settings,
                    signed.actor,
                    slug,
                    item_id,
                    changes,
                    chosen=form.groups,
                    expected=expected,
                )

        return await self._store(request, signed, slug, item_id, store, form, str(posted.get("version", "")))

    def _may_edit(self, actor: Actor, slug: str, item_id: int) -> None:
        with self.site.transaction() as session:
            item = review.item_for(session, self.settings, actor, slug, item_id)
            if not review.may_edit(actor, slug, item):
                require(actor, review.REVIEW, slug)

    async def review(self, request: Request, signed: Signed) -> Response:
        slug, _ = self._group(request, signed)
        item_id = self._item_id(request)
        await run_in_threadpool(self._reviewable, signed.actor, slug, item_id)
        posted = await self.pages.form(request)
        if posted is None:
            return self.pages.rejected(request, signed.language)

        def store() -> None:
            decision = DECISIONS.get(str(posted.get("decision", "")))
            if decision is None:
                raise InputError("choose approve, reject or back to proposed")
            expected = pool.parse_version(str(posted.get("version", "")))
            with self.site.transaction() as session:
                review.decide(
                    session, self.settings, signed.actor, slug, item_id, decision, expected=expected
                )

        return await self._store(request, signed, slug, item_id, store, None, "")

    async def _store(
        self,
        request: Request,
        signed: Signed,
        slug: str,
        item_id: int,
        store: Callable[[], None],
        form: ItemForm | None,
        version: str,
    ) -> Response:
        """Make the change, then back to the item page; a refusal shows the page with its reason.

        A mistake in the form is a 400: the form comes back as typed, with the version it was
        made from. A stale form or a move the states do not allow is a 409: the page shows
        the item as it is now, so the person sees the other change before trying again.
        """
        try:
            await run_in_threadpool(store)
        except InputError as exc:
            error = self._error(signed, exc)
            return await run_in_threadpool(
                self._show,
                request,
                signed,
                slug,
                item_id,
                status=400,
                form=form,
                version=version,
                error=error,
            )
        except StateError as exc:
            error = self._error(signed, exc)
            return await run_in_threadpool(
                self._show, request, signed, slug, item_id, status=409, error=error
            )
        return RedirectResponse(f"/admin/groups/{slug}/items/{item_id}?saved=1", status_code=303)

    def _reviewable(self, actor: Actor, slug: str, item_id: int) -> None:
        with self.site.transaction() as session:
            review.item_for(session, self.settings, actor, slug, item_id)
        require(actor, review.REVIEW, slug)
