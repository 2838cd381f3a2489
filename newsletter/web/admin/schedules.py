"""The schedules page: each schedule per group with its cron, zone, next run, approval and last edition.

GET  /admin/schedules                  every schedule per group (``schedules.read``; an editor
                                       sees the groups they have a role on)
GET  /admin/schedules/new  POST        the form for a new schedule; POST writes its file
                                       (``schedules.manage``, as are the two below)
GET  /admin/schedules/{schedule_name}/edit  POST    the schedule's form; POST saves the change
POST /admin/schedules/{schedule_name}/remove        delete the schedule's file

Schedules are files in the site folder's ``schedules/`` (under version control): a
change made here is written there (``operations/siteedit.py``: comments kept,
validated as ``newsletter check`` does first, atomic, refused if the file changed since
the form was shown) and the audit log names who made it. Every tick and page reads the
folder afresh, and the daemon plans its jobs again when a file changes. Editors see the
page without any form.
"""

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts.permissions import can, require, visible_groups
from newsletter.core.errors import InputError, NotFoundError
from newsletter.core.i18n import translations
from newsletter.operations import overview
from newsletter.operations.siteedit import ABSENT, ScheduleForm, SiteEditor, version
from newsletter.scheduling.schedules import SCHEDULES_DIR, parse_schedule
from newsletter.web.admin.auth import Signed
from newsletter.web.admin.sitefiles import SiteFilePart

FORM_FIELDS = 16


class Schedules(SiteFilePart):
    permission = "schedules.manage"
    param = "schedule_name"
    form_fields = FORM_FIELDS

    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route("/admin/schedules", signed_in(self.listing)),
            Route("/admin/schedules/new", signed_in(self.new), methods=["GET", "POST"]),
            Route("/admin/schedules/{schedule_name}/edit", signed_in(self.edit), methods=["GET", "POST"]),
            Route("/admin/schedules/{schedule_name}/remove", signed_in(self.remove), methods=["POST"]),
        ]

    def _views(self, signed: Signed) -> tuple[list[overview.ScheduleView], list[str]]:
        seen = visible_groups(signed.actor, list(self.settings.groups))
        with self.workspace.site.transaction() as session:
            return overview.schedules(session, self.settings, self.workspace.clock(), seen)

    def _page(self, request: Request, signed: Signed, *, done: str = "") -> Response:
        views, problems = self._views(signed)
        return self.pages.page(
            request,
            "admin/schedules.html.j2",
            language=signed.language,
            actor=signed.actor,
            schedules=views,
            problems=problems,
            groups={slug: config.name for slug, config in self.settings.groups.items()},
            folder=SCHEDULES_DIR,
            manage=can(signed.actor, "schedules.manage", None),
            done=done,
        )

    async def listing(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "schedules.read", None)
        return await run_in_threadpool(self._page, request, signed)

    # -- changing the schedules --------------------------------------------------------------

    def _file(self, name: str) -> Path:
        path = SiteEditor(self.site, "").schedule_file(name)
        if not path.is_file():
            raise NotFoundError("no schedule named '{name}'", name=name)
        return path

    def _file_label(self, name: str | None) -> str:
        return f"{SCHEDULES_DIR}/{name}.toml"

    def _templates(self) -> list[str]:
        folder = self.settings.site_dir / "templates"
        return sorted(p.name.removesuffix(".mjml.j2") for p in folder.glob("*.mjml.j2"))

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
            "admin/schedule-form.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            existing=existing,
            values=values,
            seen=seen,
            error=error,
            groups={slug: config.name for slug, config in self.settings.groups.items()},
            templates=self._templates(),
            folder=SCHEDULES_DIR,
        )

    def _fresh_form(self, request: Request, signed: Signed, name: str | None, **keep: Any) -> Response:
        """The form as the file is now (or a new schedule's defaults)."""
        if name is None:
            return self._form_page(
                request, signed, values=_values(ScheduleForm("", "")), existing=None, seen=ABSENT, **keep
            )
        path = self._file(name)
        seen = version(path)
        text = path.read_text(encoding="utf-8", errors="replace")
        schedule, problems = parse_schedule(path, text, self.settings.groups)
        if schedule is None:
            raise InputError(
                "{file} has problems ({problem}): fix it by hand",
                file=self._file_label(name),
                problem=str(problems[0]),
            )
        form = ScheduleForm(
            name=schedule.name,
            cron=schedule.cron,
            groups=schedule.groups,
            timezone=schedule.timezone or "",
            template=schedule.template or "",
            subject=schedule.subject,
            skip_if_empty=schedule.skip_if_empty,
            approval=schedule.approval,
            grace_hours=f"{schedule.grace_hours:g}",
        )
        return self._form_page(request, signed, values=_values(form), existing=name, seen=seen, **keep)

    async def new(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "schedules.manage", None)
        if request.method == "GET":
            return await run_in_threadpool(self._fresh_form, request, signed, None)
        return await self._save(request, signed, None)

    async def edit(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "schedules.manage", None)
        name = request.path_params["schedule_name"]
        if request.method == "GET":
            return await self._answer_form(request, signed, name)
        await run_in_threadpool(self._file, name)
        return await self._save(request, signed, name)

    async def _answer_form(self, request: Request, signed: Signed, name: str) -> Response:
        try:
            return await run_in_threadpool(self._fresh_form, request, signed, name)
        except InputError as exc:
            gettext = translations(signed.language).gettext
            return self.pages.message(
                request,
                gettext("This schedule cannot be changed here"),
                str(exc),
                language=signed.language,
                status=409,
            )

    def _check(self, name: str) -> None:
        self._file(name)

    def _parse(self, form: FormData, existing: str | None) -> ScheduleForm:
        return _posted(form, existing)

    def _values(self, posted: ScheduleForm) -> dict[str, Any]:
        return _values(posted)

    def _write(
        self, editor: SiteEditor, posted: ScheduleForm, seen: str, existing: str | None, language: str
    ) -> str:
        gettext = translations(language).gettext
        editor.save_schedule(posted, seen, new=existing is None)
        if existing is None:
            done = gettext("The schedule %(name)s was added as %(file)s.")
        else:
            done = gettext("The schedule %(name)s was changed in %(file)s.")
        return done % {"name": posted.name, "file": f"{SCHEDULES_DIR}/{posted.name}.toml"}

    def _unconfirmed(self, name: str) -> InputError:
        return InputError("tick the box to confirm that the schedule {name} should be removed", name=name)

    def _delete(self, editor: SiteEditor, name: str, seen: str, language: str) -> str:
        editor.remove_schedule(name, seen)
        gettext = translations(language).gettext
        return gettext("The schedule %(name)s was removed; the editions it built stay.") % {"name": name}


def _posted(form: FormData, existing: str | None) -> ScheduleForm:
    def text(key: str, default: str = "") -> str:
        return str(form.get(key, default))

    return ScheduleForm(
        name=existing if existing is not None else text("name").strip(),
        cron=text("cron"),
        groups=tuple(str(g) for g in form.getlist("group")),
        timezone=text("timezone"),
        template=text("template"),
        subject=text("subject"),
        skip_if_empty=form.get("skip_if_empty") == "yes",
        approval=text("approval", "editor"),
        grace_hours=text("grace_hours", "6"),
    )


def _values(form: ScheduleForm) -> dict[str, Any]:
    """A schedule's values as the form shows them."""
    return {
        "name": form.name,
        "cron": form.cron,
        "groups": list(form.groups),
        "timezone": form.timezone,
        "template": form.template,
        "subject": form.subject or "{{ group.name }}: news",
        "skip_if_empty": form.skip_if_empty,
        "approval": form.approval,
        "grace_hours": form.grace_hours,
    }
