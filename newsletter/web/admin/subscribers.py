"""A group's subscribers in the workspace: list, add, remove, export (the CSV import: ``members_import.py``,
the sign-up form for the group's website: ``signupform.py``).

GET  .../subscribers          search, status and field filters, keyset pages   (subscribers.read)
POST .../subscribers/add      one member, as ``subscribers add``               (subscribers.write)
POST .../subscribers/remove   one member, as ``subscribers remove``            (subscribers.write)
GET  .../subscribers/export   the CSV of ``subscribers export``                (subscribers.export)

where ``...`` is ``/admin/groups/{slug}``.
Every handler asks the permission first: a group the person has no permission on is a
404 before anything else is read, a visible group's forbidden act a 403. The work is
the library's (``audience/``), the same functions the CLI calls, acting as ``user:EMAIL``.
"""

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from newsletter.accounts.permissions import can, require
from newsletter.audience import browse, export
from newsletter.audience import subscribers as library
from newsletter.core import audit
from newsletter.core.errors import InputError, NotFoundError, StateError
from newsletter.core.i18n import translations
from newsletter.core.models import MembershipStatus
from newsletter.core.site import get_group
from newsletter.web.admin.auth import Part, Signed
from newsletter.web.admin.members_import import MembersImport, group_context
from newsletter.web.admin.signupform import SignUpForm

BASE = "/admin/groups/{slug}/subscribers"
# Rows written to the export's stream at a time.
EXPORT_CHUNK = 1000


class Subscribers(Part):
    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route(BASE, signed_in(self.list)),
            Route(BASE + "/add", signed_in(self.add), methods=["POST"]),
            Route(BASE + "/remove", signed_in(self.remove), methods=["POST"]),
            Route(BASE + "/export", signed_in(self.export)),
            *MembersImport(self.workspace, self.require, BASE).routes(),
            *SignUpForm(self.workspace).routes(self.require),
        ]

    def require(self, signed: Signed, permission: str, request: Request) -> str:
        """The group's slug if the person may do ``permission`` on it (else NotFoundError or Forbidden)."""
        slug = str(request.path_params["slug"])
        require(signed.actor, permission, slug)
        if slug not in self.settings.groups:
            raise NotFoundError(f"no group {slug!r}")
        return slug

    # -- the list --------------------------------------------------------------------------

    def query(self, request: Request) -> browse.Query:
        """The list's search and filters from the URL; a value that makes no sense is ignored."""
        params = request.query_params
        statuses = {s.value: s for s in MembershipStatus}
        fields = {
            name: value
            for name, spec in self.settings.fields.items()
            if spec.type == "choice" and (value := params.get(f"field.{name}", "")) in spec.choices
        }
        return browse.Query(
            search=params.get("q", "")[:200],
            status=statuses.get(params.get("status", "")),
            fields=fields,
            after=_cursor(params.get("after")),
            before=_cursor(params.get("before")),
        )

    async def list(self, request: Request, signed: Signed) -> Response:
        slug = self.require(signed, "subscribers.read", request)
        return await self.render(request, signed, slug, self.query(request))

    async def render(
        self,
        request: Request,
        signed: Signed,
        slug: str,
        query: browse.Query,
        *,
        status: int = 200,
        **extra: Any,
    ) -> Response:
        """The list page for ``query``, with a notice or an error and the add form's values in ``extra``."""
        found = await run_in_threadpool(self._page, slug, query)
        extra = {"form": {}, "notice": "", "error": "", **extra}
        base = BASE.format(slug=slug)
        filters = {
            "q": query.search,
            "status": query.status.value if query.status else "",
            **{f"field.{name}": value for name, value in query.fields.items()},
        }
        filters = {key: value for key, value in filters.items() if value}
        return self.pages.page(
            request,
            "admin/subscribers.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            group=group_context(self.settings.groups[slug], slug),
            query=query,
            page=found,
            statuses=[s.value for s in MembershipStatus],
            fields=self.settings.fields,
            total=sum(found.counts.values()),
            may_write=can(signed.actor, "subscribers.write", slug),
            may_export=can(signed.actor, "subscribers.export", slug),
            base=base,
            next_url=_link(base, filters, after=found.next_after),
            previous_url=_link(base, filters, before=found.previous_before),
            **extra,
        )

    def _page(self, slug: str, query: browse.Query) -> browse.Page:
        with self.site.transaction() as session:
            return browse.page(session, self.settings, slug, query)

    # -- add and remove --------------------------------------------------------------------

    async def add(self, request: Request, signed: Signed) -> Response:
        slug = self.require(signed, "subscribers.write", request)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, signed.language)
        gettext = translations(signed.language).gettext
        values = {key: str(form.get(key, "")).strip() for key in ("address", "name", "language")}
        fields = {name: str(form.get(f"field.{name}", "")) for name in self.settings.fields}
        if not values["address"]:
            error = gettext("Give the address of the person to add.")
            return await self.render(
                request, signed, slug, browse.Query(), status=400, error=error, form={**values, **fields}
            )
        try:
            outcome = await run_in_threadpool(self._add, slug, values, fields, signed)
        except (InputError, StateError) as exc:
            return await self.render(
                request, signed, slug, browse.Query(), status=400, error=exc, form={**values, **fields}
            )
        notice = {
            "added": gettext("Added %(address)s."),
            "updated": gettext("%(address)s was already known: updated."),
            "unchanged": gettext("%(address)s is already a member: nothing changed."),
        }[outcome] % {"address": values["address"]}
        return await self.render(request, signed, slug, browse.Query(search=values["address"]), notice=notice)

    def _add(self, slug: str, values: dict[str, str], fields: dict[str, str], signed: Signed) -> str:
        with self.site.transaction() as session:
            return library.add(
                session,
                self.settings,
                slug,
                values["address"],
                actor=signed.actor.label,
                name=values["name"] or None,
                language=values["language"] or None,
                fields=fields,
                source="web",
            )

    async def remove(self, request: Request, signed: Signed) -> Response:
        slug = self.require(signed, "subscribers.write", request)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, signed.language)
        gettext = translations(signed.language).gettext
        address = str(form.get("address", "")).strip()
        if not address:
            error = gettext("Give the address of the member to remove.")
            return await self.render(request, signed, slug, browse.Query(), status=400, error=error)
        try:
            removed = await run_in_threadpool(self._remove, slug, address, signed)
        except NotFoundError as exc:
            # The person is not a member of this group: say so on the page, not as a missing page.
            return await self.render(request, signed, slug, browse.Query(), status=400, error=exc)
        text = (
            gettext("Unsubscribed %(address)s.")
            if removed
            else gettext("%(address)s was already not active.")
        )
        return await self.render(
            request, signed, slug, browse.Query(search=address), notice=text % {"address": address}
        )

    def _remove(self, slug: str, address: str, signed: Signed) -> bool:
        with self.site.transaction() as session:
            return library.remove(
                session, self.settings, slug, address, actor=signed.actor.label, source="web"
            )

    # -- export ----------------------------------------------------------------------------

    async def export(self, request: Request, signed: Signed) -> Response:
        """The CSV of ``subscribers export`` (active members; ``?status=all`` everyone, or one status)."""
        slug = self.require(signed, "subscribers.export", request)
        wanted = request.query_params.get("status", MembershipStatus.ACTIVE.value)
        statuses = () if wanted == "all" else (wanted,) if wanted in set(MembershipStatus) else ("active",)
        await run_in_threadpool(self._record_export, slug, statuses, signed)
        headers = {"content-disposition": f'attachment; filename="{slug}-members.csv"'}
        return StreamingResponse(
            self._rows(slug, statuses), media_type="text/csv; charset=utf-8", headers=headers
        )

    def _record_export(self, slug: str, statuses: tuple[str, ...], signed: Signed) -> None:
        with self.site.transaction() as session:
            group = get_group(session, self.settings, slug)
            audit.record(
                session,
                "export",
                actor=signed.actor.label,
                source="web",
                group_id=group.id,
                statuses=list(statuses) or "all",
            )

    def _rows(self, slug: str, statuses: tuple[str, ...]) -> Iterator[str]:
        """The CSV in chunks, read from the database as it is sent (Starlette runs it in a thread)."""
        with self.site.transaction() as session:
            buffer = _Chunks()
            members = export.members(session, self.settings, slug, statuses)
            for count, _ in enumerate(export.write_rows(members, buffer, list(self.settings.fields))):
                if count % EXPORT_CHUNK == 0:
                    yield buffer.take()
            yield buffer.take()


class _Chunks(io.StringIO):
    def take(self) -> str:
        text = self.getvalue()
        self.seek(0)
        self.truncate()
        return text


def _link(base: str, filters: dict[str, str], **cursor: int | None) -> str | None:
    """The list's URL with the same search and filters, from a cursor (None: no such page)."""
    ((name, value),) = cursor.items()
    return None if value is None else f"{base}?{urlencode({**filters, name: value})}"


def _cursor(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 19 else None
