"""The webhooks pages: each endpoint with its deliveries per status and its latest attempts.

GET  /admin/webhooks                  every endpoint and every delivery (``webhooks.site``: admins)
GET  /admin/groups/{slug}/webhooks    the endpoints that name the group, with that group's
                                      deliveries and items' (``webhooks.read`` on the group)

A delivery carries a member's address to a system outside, so a group's people see
only their group's endpoints; the site-wide ones (no ``groups``) get every group's
events and are for admins. Endpoints are declared in ``newsletter.toml`` (under
version control): the page says so and does not edit them, and never shows a secret,
only where it is read from. A receiver's answer is shown shortened and escaped.
"""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts.permissions import require
from newsletter.core.errors import NotFoundError
from newsletter.delivery import webhooks
from newsletter.web.admin.auth import Part, Signed
from newsletter.web.admin.members_import import group_context


class Webhooks(Part):
    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route("/admin/webhooks", signed_in(self.site_wide)),
            Route("/admin/groups/{slug}/webhooks", signed_in(self.for_group)),
        ]

    def _views(self, group: str | None) -> list[webhooks.EndpointView]:
        with self.site.transaction() as session:
            return webhooks.endpoints(session, self.settings, group)

    async def site_wide(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "webhooks.site", None)
        return await self._page(request, signed, None)

    async def for_group(self, request: Request, signed: Signed) -> Response:
        slug = str(request.path_params["slug"])
        require(signed.actor, "webhooks.read", slug)
        if slug not in self.settings.groups:
            raise NotFoundError(f"no group {slug!r}")
        return await self._page(request, signed, slug)

    async def _page(self, request: Request, signed: Signed, slug: str | None) -> Response:
        views = await run_in_threadpool(self._views, slug)
        return self.pages.page(
            request,
            "admin/webhooks.html.j2",
            language=signed.language,
            actor=signed.actor,
            endpoints=views,
            group=None if slug is None else group_context(self.settings.groups[slug], slug),
            config_file=self.settings.config_file.name,
        )
