"""A subscriber's own page: lists and their topics, language and name; a copy of their data; erasure.

The preferences link in every email opens it. Saving records the consent text shown
for each list ticked; ``export`` hands over everything held as JSON; ``forget`` (a
CSRF-checked POST) erases the person.
"""

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.audience import selfservice
from newsletter.audience.subscribers import forget
from newsletter.core.errors import BadToken, InputError, NotFoundError
from newsletter.core.i18n import available_languages, translations
from newsletter.core.tokens import TokenData
from newsletter.web.forms import client_address
from newsletter.web.public.links import Links
from newsletter.web.public.signup import public_groups

PREFERENCES_CONSENT_TEXT = "Tick the lists you want to receive by email; untick a list to stop receiving it."


class Preferences:
    def __init__(self, links: Links) -> None:
        self.links = links
        self.pages = links.pages
        self.site = links.site
        self.settings = links.settings

    def routes(self) -> list[Route]:
        return [
            Route("/preferences", self.links.without_token),
            Route("/preferences/{token}", self.preferences, methods=["GET", "POST"]),
            Route("/preferences/{token}/export", self.export),
            Route("/preferences/{token}/forget", self.forget, methods=["POST"]),
        ]

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            data, language = await self.links.open("preferences", token)
        except (BadToken, NotFoundError) as exc:
            return self.links.bad(request, exc)
        gettext = translations(language).gettext
        saved = False
        if request.method == "POST":
            form = await self.pages.form(request)
            if form is None:
                return self.pages.rejected(request, language)
            groups = {str(g) for g in form.getlist("groups") if str(g) in self.settings.groups}
            # The groups whose topics the page showed: none ticked there is everything again.
            shown = [str(g) for g in form.getlist("topics-shown") if str(g) in self.settings.groups]
            chosen = {slug: [str(t) for t in form.getlist(f"topics-{slug}")] for slug in shown}
            try:
                await run_in_threadpool(
                    self._save,
                    data,
                    groups,
                    str(form.get("name", ""))[:200],
                    str(form.get("language", ""))[:35] or None,
                    gettext(PREFERENCES_CONSENT_TEXT),
                    client_address(request),
                    chosen,
                )
            except InputError as exc:
                return self.pages.message(request, gettext("Not saved"), exc, language=language, status=400)
            language = await run_in_threadpool(self.links.language_of, data)
            saved = True
        prefs = await run_in_threadpool(self._load, data)
        return self.pages.page(
            request,
            "preferences.html.j2",
            language=language,
            prefs=prefs,
            groups=public_groups(self.settings),
            languages=sorted(available_languages()),
            token=token,
            saved=saved,
            consent=translations(language).gettext(PREFERENCES_CONSENT_TEXT),
        )

    def _load(self, data: TokenData) -> selfservice.Preferences:
        with self.site.transaction() as session:
            return selfservice.preferences(session, self.settings, data)

    def _save(
        self,
        data: TokenData,
        groups: set[str],
        name: str,
        language: str | None,
        consent: str,
        client: str | None,
        chosen_topics: dict[str, list[str]],
    ) -> None:
        with self.site.transaction() as session:
            selfservice.update_preferences(
                session,
                self.settings,
                data,
                groups=groups,
                name=name,
                language=language,
                consent_text=consent,
                ip=client,
                chosen_topics=chosen_topics,
            )

    async def export(self, request: Request) -> Response:
        try:
            data, _ = await self.links.open("preferences", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            return self.links.bad(request, exc)

        def work() -> dict[str, Any]:
            with self.site.transaction() as session:
                return selfservice.export(session, data)

        try:
            body = await run_in_threadpool(work)
        except NotFoundError as exc:
            return self.links.bad(request, exc)
        return JSONResponse(body, headers={"content-disposition": 'attachment; filename="my-data.json"'})

    async def forget(self, request: Request) -> Response:
        try:
            data, language = await self.links.open("preferences", request.path_params["token"])
        except (BadToken, NotFoundError) as exc:
            return self.links.bad(request, exc)
        if await self.pages.form(request) is None:
            return self.pages.rejected(request, language)

        def work() -> None:
            with self.site.transaction() as session:
                prefs = selfservice.preferences(session, self.settings, data)
                forget(session, prefs.email, actor="subscriber")

        await run_in_threadpool(work)
        gettext = translations(language).gettext
        return self.pages.message(
            request,
            gettext("Deleted"),
            gettext("Everything we held about you has been erased."),
            language=language,
        )
