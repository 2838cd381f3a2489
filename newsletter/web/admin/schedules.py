"""The schedules page: each schedule per group with its cron, zone, next run, approval and last edition.

GET  /admin/schedules    (``schedules.read``; an editor sees the groups they have a role on)

Schedules are files in the site folder's ``schedules/`` (under version control): the
page says so and does not edit them.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts.permissions import require, visible_groups
from newsletter.operations import overview
from newsletter.scheduling.schedules import SCHEDULES_DIR
from newsletter.web.admin.auth import Part, Signed


class Schedules(Part):
    def routes(self) -> list[Route]:
        return [Route("/admin/schedules", self.workspace.signed_in(self.listing))]

    def _views(self, signed: Signed) -> tuple[list[overview.ScheduleView], list[str]]:
        seen = visible_groups(signed.actor, list(self.settings.groups))
        with self.workspace.site.transaction() as session:
            return overview.schedules(session, self.settings, self.workspace.clock(), seen)

    async def listing(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "schedules.read", None)
        views, problems = await run_in_threadpool(self._views, signed)
        return self.pages.page(
            request,
            "admin/schedules.html.j2",
            language=signed.language,
            actor=signed.actor,
            schedules=views,
            problems=problems,
            groups={slug: config.name for slug, config in self.settings.groups.items()},
            folder=SCHEDULES_DIR,
        )
