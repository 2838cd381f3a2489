"""The signed-in pages: the dashboard of the user's groups, a group's page, and the account page.

Lists are filtered by the permission check, not only the pages behind them: the
dashboard shows only the groups the user holds a permission on, and any other group's
page is a 404, exactly as for a group that does not exist.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts import sessions
from newsletter.accounts.permissions import require_visible, visible_groups
from newsletter.core.errors import NotFoundError
from newsletter.core.permissions import PERMISSIONS
from newsletter.operations import overview
from newsletter.web.admin.auth import HOME, Part, Signed


class Dashboard(Part):
    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route(HOME, signed_in(self.home)),
            Route("/admin/account", signed_in(self.account)),
            Route("/admin/groups/{slug}/", signed_in(self.group)),
        ]

    def _group(self, slug: str, signed: Signed) -> dict[str, object]:
        config = self.settings.groups[slug]
        permissions = sorted(signed.actor.permissions_on(slug))
        return {
            "slug": slug,
            "name": config.name,
            "brand_color": config.brand_color,
            "permissions": [(name, PERMISSIONS[name]) for name in permissions],
        }

    async def home(self, request: Request, signed: Signed) -> Response:
        slugs = visible_groups(signed.actor, list(self.settings.groups))
        summaries = await run_in_threadpool(self._summaries, slugs)
        groups = [self._group(slug, signed) | {"summary": summaries[slug]} for slug in slugs]
        site_permissions = sorted(signed.actor.permissions_on(None))
        return self.pages.page(
            request,
            "admin/dashboard.html.j2",
            language=signed.language,
            actor=signed.actor,
            groups=groups,
            site_permissions=[(name, PERMISSIONS[name]) for name in site_permissions],
        )

    async def group(self, request: Request, signed: Signed) -> Response:
        slug = request.path_params["slug"]
        require_visible(signed.actor, slug)
        if slug not in self.settings.groups:
            raise NotFoundError(f"no group {slug!r}")
        return self.pages.page(
            request,
            "admin/group.html.j2",
            language=signed.language,
            actor=signed.actor,
            group=self._group(slug, signed),
        )

    async def account(self, request: Request, signed: Signed) -> Response:
        live = await run_in_threadpool(self._sessions, signed.actor.user_id)
        return self.pages.page(
            request,
            "admin/account.html.j2",
            language=signed.language,
            actor=signed.actor,
            sessions=live,
            current=signed.session_id,
        )

    def _summaries(self, slugs: list[str]) -> dict[str, overview.GroupSummary]:
        """What waits in each group the person may see (asked after the permission check)."""
        now = self.workspace.clock()
        with self.workspace.site.transaction() as session:
            return overview.group_summaries(session, self.settings, slugs, now)

    def _sessions(self, user_id: int) -> list[sessions.Seen]:
        with self.workspace.site.transaction() as session:
            return sessions.live(session, user_id, now=self.workspace.clock())
