"""What the pages that change the site's own files share: save a form, remove an entry.

The sources page (``newsletter.toml``'s ``[[sources]]``) and the schedules page
(``schedules/*.toml``) write through ``operations/siteedit.py``, which validates,
keeps comments, replaces atomically and refuses a form shown before the file changed
(``StaleRecord``). The flow around it is the same for both: check the permission and
the form, write, and show either the list with what was done, the form again with the
error (400), or the file as it is now when it changed meanwhile (409). Each page says
only what differs: its form, its file and its words.
"""

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from newsletter.accounts.permissions import require
from newsletter.core.errors import InputError, StaleRecord
from newsletter.core.i18n import translations
from newsletter.operations.siteedit import SiteEditor
from newsletter.web.admin.auth import Part, Signed


def stale_message(language: str, file: str) -> str:
    """The page's words for a form shown before someone else changed the file (StaleRecord)."""
    gettext = translations(language).gettext
    return gettext(
        "%(file)s was changed since this form was shown (by someone else, or by hand), so nothing "
        "was saved. The form now shows the file as it is: make your change again."
    ) % {"file": file}


class SiteFilePart(Part):
    """A page that adds, changes and removes entries of a site file; see the module docstring."""

    # The permission that changes the file, and the path parameter naming an entry.
    permission: str
    param: str
    # Fields a form may have besides one box per group.
    form_fields: int

    # -- what each page says for itself -----------------------------------------------------------

    def _page(self, request: Request, signed: Signed, *, done: str = "") -> Response:
        raise NotImplementedError

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
        raise NotImplementedError

    def _fresh_form(self, request: Request, signed: Signed, name: str | None, **keep: Any) -> Response:
        """The form as the file is now: the entry's values, or a new entry's defaults."""
        raise NotImplementedError

    def _check(self, name: str) -> None:
        """NotFoundError when there is no entry ``name``."""
        raise NotImplementedError

    def _file_label(self, name: str | None) -> str:
        raise NotImplementedError

    def _parse(self, form: FormData, existing: str | None) -> Any:
        """The posted form, as siteedit takes it."""
        raise NotImplementedError

    def _values(self, posted: Any) -> dict[str, Any]:
        """The posted values as the form shows them again."""
        raise NotImplementedError

    def _write(self, editor: SiteEditor, posted: Any, seen: str, existing: str | None, language: str) -> str:
        """Save the entry; what the page then says was done."""
        raise NotImplementedError

    def _unconfirmed(self, name: str) -> InputError:
        """The error when the removal's box was not ticked."""
        raise NotImplementedError

    def _delete(self, editor: SiteEditor, name: str, seen: str, language: str) -> str:
        """Remove the entry; what the page then says was done."""
        raise NotImplementedError

    # -- the shared flow ------------------------------------------------------------------------------

    async def _save(self, request: Request, signed: Signed, existing: str | None) -> Response:
        form = await self.pages.form(request, max_fields=self.form_fields + len(self.settings.groups))
        if form is None:
            return self.pages.rejected(request, signed.language)
        posted = self._parse(form, existing)
        seen = str(form.get("version", ""))

        def act() -> str:
            if not seen:
                raise InputError("the form is incomplete: reload the page and try again")
            editor = SiteEditor(self.site, signed.actor.label)
            return self._write(editor, posted, seen, existing, signed.language)

        try:
            done = await run_in_threadpool(act)
        except StaleRecord:
            stale = stale_message(signed.language, self._file_label(existing))
            return await run_in_threadpool(
                partial(self._fresh_form, request, signed, existing, error=stale, status=409)
            )
        except InputError as exc:
            form_page = partial(
                self._form_page,
                request,
                signed,
                values=self._values(posted),
                existing=existing,
                seen=seen,
                error=exc,
                status=400,
            )
            return await run_in_threadpool(form_page)
        return await run_in_threadpool(partial(self._page, request, signed, done=done))

    async def remove(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, self.permission, None)
        name = request.path_params[self.param]
        await run_in_threadpool(self._check, name)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.rejected(request, signed.language)
        seen = str(form.get("version", ""))

        def act() -> str:
            if form.get("confirm") != "yes":
                raise self._unconfirmed(name)
            if not seen:
                raise InputError("the form is incomplete: reload the page and try again")
            return self._delete(SiteEditor(self.site, signed.actor.label), name, seen, signed.language)

        error: str | InputError
        try:
            done = await run_in_threadpool(act)
        except StaleRecord:
            error, status = stale_message(signed.language, self._file_label(name)), 409
        except InputError as exc:
            error, status = exc, 400
        else:
            return await run_in_threadpool(partial(self._page, request, signed, done=done))
        return await run_in_threadpool(
            partial(self._fresh_form, request, signed, name, error=error, status=status)
        )
