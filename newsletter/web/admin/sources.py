"""The sources page: every source with its health; admins add, change, remove and fetch them.

GET  /admin/sources                       every source: last fetched, last success, last error,
                                          failures in a row (``sources.read``)
POST /admin/sources/{source_name}/fetch   collect that one source now, as ``newsletter collect
                                          --source NAME`` does, and show the result (``sources.manage``)
GET  /admin/sources/new  POST             the form for a new source; POST adds it (``sources.manage``)
GET  /admin/sources/{source_name}/edit  POST
                                          the source's form; POST saves the change (``sources.manage``)
POST /admin/sources/{source_name}/remove  take the source out of the site (``sources.manage``)

Sources are declared in ``newsletter.toml``, under version control with the rest of the
site folder: a change made here is written there (``operations/siteedit.py``: comments
and layout kept, validated first, atomic, refused if the file changed since the form
was shown) and the audit log names who made it. Editors see the page without any form.
A source's groups are shown only as far as the person may see them.
"""

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts.permissions import can, require, visible_groups
from newsletter.collecting.sources import SourceReport
from newsletter.core.errors import InputError, NotFoundError
from newsletter.core.i18n import translations
from newsletter.core.sections import SourceConfig
from newsletter.operations import overview
from newsletter.operations.siteedit import SiteEditor, SourceForm, version
from newsletter.web.admin.auth import Signed
from newsletter.web.admin.sitefiles import SiteFilePart

# A source's form: its fields, one box per group, the CSRF token and the file's version.
FORM_FIELDS = 16


class Sources(SiteFilePart):
    permission = "sources.manage"
    param = "source_name"
    form_fields = FORM_FIELDS

    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route("/admin/sources", signed_in(self.listing)),
            Route("/admin/sources/new", signed_in(self.new), methods=["GET", "POST"]),
            Route("/admin/sources/{source_name}/fetch", signed_in(self.fetch), methods=["POST"]),
            Route("/admin/sources/{source_name}/edit", signed_in(self.edit), methods=["GET", "POST"]),
            Route("/admin/sources/{source_name}/remove", signed_in(self.remove), methods=["POST"]),
        ]

    def _rows(self, signed: Signed) -> list[dict[str, object]]:
        with self.site.transaction() as session:
            found = overview.sources(session, self.settings)
        seen = visible_groups(signed.actor, list(self.settings.groups))
        return [
            {
                "config": view.config,
                "health": view.health,
                "every_group": "*" in view.config.groups,
                "groups": [self.settings.groups[g].name for g in view.config.groups if g in seen],
            }
            for view in found
        ]

    def _page(
        self,
        request: Request,
        signed: Signed,
        *,
        result: SourceReport | None = None,
        done: str = "",
        status: int = 200,
    ) -> Response:
        return self.pages.page(
            request,
            "admin/sources.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            sources=self._rows(signed),
            manage=can(signed.actor, "sources.manage", None),
            config_file=self.settings.config_file.name,
            result=result,
            done=done,
        )

    async def listing(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "sources.read", None)
        return await run_in_threadpool(self._page, request, signed)

    async def fetch(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "sources.manage", None)
        if await self.pages.form(request) is None:
            return self.pages.rejected(request, signed.language)
        name = request.path_params["source_name"]
        if name not in {source.name for source in self.settings.sources}:
            raise NotFoundError("no source named '{name}'", name=name)
        report = await run_in_threadpool(overview.fetch_now, self.site, name, actor=signed.actor.label)
        return await run_in_threadpool(self._page, request, signed, result=report)

    # -- changing the sources ----------------------------------------------------------------

    def _file_label(self, name: str | None) -> str:
        return self.settings.config_file.name

    def _source(self, name: str) -> SourceConfig:
        for source in self.settings.sources:
            if source.name == name:
                return source
        raise NotFoundError("no source named '{name}'", name=name)

    def _form_page(
        self,
        request: Request,
        signed: Signed,
        *,
        values: dict[str, Any],
        existing: str | None,
        seen: str,
        error: str | InputError = "",
        status: int = 200,
    ) -> Response:
        return self.pages.page(
            request,
            "admin/source-form.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            existing=existing,
            values=values,
            seen=seen,
            error=error,
            groups={slug: config.name for slug, config in self.settings.groups.items()},
            config_file=self.settings.config_file.name,
        )

    def _fresh_form(self, request: Request, signed: Signed, name: str | None, **keep: Any) -> Response:
        """The form as the file is now: the source's values (or a new source's defaults)."""
        seen = version(self.settings.config_file)
        if name is None:
            values = _values(SourceConfig(name="", url="", groups=()))
        else:
            values = _values(self._source(name))
        return self._form_page(request, signed, values=values, existing=name, seen=seen, **keep)

    async def new(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "sources.manage", None)
        if request.method == "GET":
            return await run_in_threadpool(self._fresh_form, request, signed, None)
        return await self._save(request, signed, None)

    async def edit(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "sources.manage", None)
        name = request.path_params["source_name"]
        if request.method == "GET":
            return await run_in_threadpool(self._fresh_form, request, signed, name)
        await run_in_threadpool(self._source, name)
        return await self._save(request, signed, name)

    def _check(self, name: str) -> None:
        self._source(name)

    def _parse(self, form: FormData, existing: str | None) -> SourceForm:
        return _posted(form, existing)

    def _values(self, posted: SourceForm) -> dict[str, Any]:
        return _posted_values(posted)

    def _write(
        self, editor: SiteEditor, posted: SourceForm, seen: str, existing: str | None, language: str
    ) -> str:
        gettext = translations(language).gettext
        if existing is None:
            editor.add_source(posted, seen)
            done = gettext("The source %(name)s was added to %(file)s.")
        else:
            editor.change_source(existing, posted, seen)
            done = gettext("The source %(name)s was changed in %(file)s.")
        return done % {"name": posted.name, "file": self.settings.config_file.name}

    def _unconfirmed(self, name: str) -> InputError:
        return InputError("tick the box to confirm that the source {name} should be removed", name=name)

    def _delete(self, editor: SiteEditor, name: str, seen: str, language: str) -> str:
        editor.remove_source(name, seen)
        gettext = translations(language).gettext
        return gettext("The source %(name)s was removed from %(file)s; its items stay.") % {
            "name": name,
            "file": self.settings.config_file.name,
        }


def _posted(form: FormData, existing: str | None) -> SourceForm:
    def text(key: str, default: str = "") -> str:
        return str(form.get(key, default))

    return SourceForm(
        name=existing if existing is not None else text("name").strip(),
        url=text("url"),
        topic=text("topic"),
        groups=tuple(str(g) for g in form.getlist("group")),
        approval=text("approval", "editor"),
        since_days=text("since_days"),
        language=text("language", "en"),
        interval_minutes=text("interval_minutes", "60"),
        allow_private=form.get("allow_private") == "yes",
        kind=text("kind", "feed"),
        link_selector=text("link_selector"),
        max_articles=text("max_articles", "20"),
    )


def _values(config: SourceConfig) -> dict[str, Any]:
    """A source's values as the form shows them."""
    return {
        "name": config.name,
        "url": config.url,
        "topic": config.topic,
        "groups": list(config.groups),
        "approval": config.approval,
        "since_days": "" if config.since_days is None else str(config.since_days),
        "language": config.language,
        "interval_minutes": str(config.interval_minutes),
        "allow_private": config.allow_private,
        "kind": config.kind,
        "link_selector": config.link_selector or "",
        "max_articles": str(config.max_articles),
    }


def _posted_values(posted: SourceForm) -> dict[str, Any]:
    """What was posted, shown again in the form next to the message saying what is wrong."""
    return {
        "name": posted.name,
        "url": posted.url,
        "topic": posted.topic,
        "groups": list(posted.groups),
        "approval": posted.approval,
        "since_days": posted.since_days,
        "language": posted.language,
        "interval_minutes": posted.interval_minutes,
        "allow_private": posted.allow_private,
        "kind": posted.kind,
        "link_selector": posted.link_selector,
        "max_articles": posted.max_articles,
    }
