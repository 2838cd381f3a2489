"""Uploading a subscriber CSV in the workspace: the plan first, the import only on confirmation.

GET  /admin/groups/{slug}/subscribers/import               the upload form          (subscribers.write)
POST /admin/groups/{slug}/subscribers/import               plan the file: verdicts, nothing written
POST /admin/groups/{slug}/subscribers/import/{upload_id}   import it, if the plan still holds

The uploaded file is kept in the database (``audience/uploads.py``) for an hour under a
random id; the confirmation names that id and the plan's digest, and the file is
imported only if planning it again gives that very plan. A file over
``uploads.MAX_BYTES`` is refused (413) before it is read; one that is not a subscriber
CSV gets a message and is not kept.
"""

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.audience import uploads
from newsletter.audience.subscribers import ImportReport
from newsletter.core.errors import ImportFileError
from newsletter.core.i18n import translations
from newsletter.core.sections import GroupConfig
from newsletter.web.admin.auth import Part, Signed, Workspace


def group_context(config: GroupConfig, slug: str) -> dict[str, str]:
    """What the pages show of the group (its colour brands the page)."""
    return {"slug": slug, "name": config.name, "brand_color": config.brand_color}


# The group's slug if the person may do the permission on it (else NotFoundError or Forbidden).
Require = Callable[[Signed, str, Request], str]
# Rows listed one by one on the plan's page; the counts cover every row.
SHOWN_ROWS = 500
# The multipart envelope around the file: boundaries, headers, the CSRF field.
ENVELOPE = 16_384


class MembersImport(Part):
    """The import pages under ``base`` (the list's path), checked by the list's ``require``."""

    def __init__(self, workspace: Workspace, require: Require, base: str) -> None:
        super().__init__(workspace)
        self.require = require
        self.base = base

    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route(self.base + "/import", signed_in(self.upload), methods=["GET", "POST"]),
            Route(self.base + "/import/{upload_id}", signed_in(self.confirm), methods=["POST"]),
        ]

    def _page(
        self, request: Request, signed: Signed, slug: str, *, status: int = 200, **context: object
    ) -> Response:
        return self.pages.page(
            request,
            "admin/subscribers-import.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            group=group_context(self.settings.groups[slug], slug),
            base=self.base.format(slug=slug),
            fields=self.settings.fields,
            max_megabytes=uploads.MAX_BYTES // (1024 * 1024),
            shown_rows=SHOWN_ROWS,
            **{"error": "", "warning": "", "report": None, "applied": False, **context},
        )

    async def upload(self, request: Request, signed: Signed) -> Response:
        slug = self.require(signed, "subscribers.write", request)
        if request.method == "GET":
            return self._page(request, signed, slug)
        gettext = translations(signed.language).gettext
        too_large = gettext("The file is larger than %(size)d MB; nothing was read.") % {
            "size": uploads.MAX_BYTES // (1024 * 1024)
        }
        try:
            form = await self.pages.form(request, limit=uploads.MAX_BYTES + ENVELOPE, max_files=1)
        except HTTPException as exc:
            if exc.status_code != 413:
                raise
            return self._page(request, signed, slug, status=413, error=too_large)
        if form is None:
            return self.pages.rejected(request, signed.language)
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            error = gettext("Choose a CSV file to upload.")
            return self._page(request, signed, slug, status=400, error=error)
        data = await file.read()
        if len(data) > uploads.MAX_BYTES:
            return self._page(request, signed, slug, status=413, error=too_large)
        try:
            planned = await run_in_threadpool(self._plan, slug, data, file.filename, signed)
        except ImportFileError as exc:
            return self._page(request, signed, slug, status=400, error=exc)
        return self._plan_page(request, signed, slug, planned.upload_id, planned.report)

    def _plan(self, slug: str, data: bytes, filename: str, signed: Signed) -> uploads.Planned:
        with self.site.transaction() as session:
            return uploads.plan(
                session,
                self.settings,
                slug,
                data,
                filename,
                user_id=signed.actor.user_id,
                actor=signed.actor.label,
                now=self.workspace.clock(),
            )

    def _plan_page(
        self,
        request: Request,
        signed: Signed,
        slug: str,
        upload_id: str,
        report: ImportReport,
        *,
        status: int = 200,
        warning: str = "",
    ) -> Response:
        return self._page(
            request,
            signed,
            slug,
            status=status,
            warning=warning,
            report=report,
            upload_id=upload_id,
            digest=report.digest(),
            changes=report.added + report.updated + report.suppressed,
        )

    async def confirm(self, request: Request, signed: Signed) -> Response:
        slug = self.require(signed, "subscribers.write", request)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, signed.language)
        upload_id = str(request.path_params["upload_id"])
        digest = str(form.get("digest", ""))
        done = await run_in_threadpool(self._confirm, slug, upload_id, digest, signed)
        gettext = translations(signed.language).gettext
        if not done.applied:
            warning = gettext(
                "The list changed since this file was checked, so nothing was imported. "
                "Here is what it would do now."
            )
            return self._plan_page(
                request, signed, slug, done.upload_id, done.report, status=409, warning=warning
            )
        return self._page(request, signed, slug, report=done.report, applied=True)

    def _confirm(self, slug: str, upload_id: str, digest: str, signed: Signed) -> uploads.Confirmed:
        with self.site.transaction() as session:
            return uploads.confirm(
                session,
                self.settings,
                slug,
                upload_id,
                digest,
                user_id=signed.actor.user_id,
                actor=signed.actor.label,
                now=self.workspace.clock(),
            )
