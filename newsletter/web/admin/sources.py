"""The sources page: every source with its health, and "Fetch now" for those who manage them.

GET  /admin/sources                      every source: last fetched, last success, last error,
                                         failures in a row (``sources.read``)
POST /admin/sources/{source_name}/fetch  collect that one source now, as ``newsletter collect
                                         --source NAME`` does, and show the result (``sources.manage``)

Sources are declared in ``newsletter.toml``, which is under version control with the
rest of the site folder: the page says so, and does not edit them. A source's groups
are shown only as far as the person may see them.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts.permissions import can, require, visible_groups
from newsletter.collecting.collect import SourceReport
from newsletter.core.errors import NotFoundError
from newsletter.operations import overview
from newsletter.web.admin.auth import Part, Signed


class Sources(Part):
    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route("/admin/sources", signed_in(self.listing)),
            Route("/admin/sources/{source_name}/fetch", signed_in(self.fetch), methods=["POST"]),
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
        self, request: Request, signed: Signed, *, result: SourceReport | None = None, status: int = 200
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
            raise NotFoundError(f"no source {name!r}")
        report = await run_in_threadpool(overview.fetch_now, self.site, name, actor=signed.actor.label)
        return await run_in_threadpool(self._page, request, signed, result=report)
