"""The sign-up form a group embeds in its own website, as its editors copy it from the workspace.

GET /admin/groups/{slug}/signup-form[?form=ID]   the HTML snippet and the JSON endpoint's example
                                                  (subscribers.write: the group's editors)

The page makes a fresh form token each time it is shown (``core/tokens.py``: group, form
id, today's date), so an editor who pastes the snippet again before it expires renews it.
The form id names where the form is used (``homepage``, ``events-page``): it is kept as
the sign-up's source (``embed:homepage``), so the list shows where members came from.
"""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.core.i18n import translations
from newsletter.core.tokens import FORM_ID, FormToken
from newsletter.web.admin.auth import Part, Signed
from newsletter.web.admin.members_import import Require, group_context
from newsletter.web.public.embed import json_example, snippet

DEFAULT_FORM = "website"


class SignUpForm(Part):
    def routes(self, require: Require) -> list[Route]:
        self.require = require
        return [Route("/admin/groups/{slug}/signup-form", self.workspace.signed_in(self.show))]

    async def show(self, request: Request, signed: Signed) -> Response:
        slug = self.require(signed, "subscribers.write", request)
        gettext = translations(signed.language).gettext
        form_id = request.query_params.get("form", DEFAULT_FORM).strip().lower()[:60] or DEFAULT_FORM
        error, status = "", 200
        if not FORM_ID.fullmatch(form_id):
            error = gettext("A form's name is up to 30 lower-case letters, digits and hyphens.")
            form_id, status = DEFAULT_FORM, 400
        today = self.workspace.clock().date()
        config = self.settings.groups[slug]
        return self.pages.page(
            request,
            "admin/signup-form.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            group=group_context(config, slug),
            website=config.website or "",
            form_id=form_id,
            error=error,
            expires=FormToken(slug, form_id, today).expires,
            snippet=snippet(self.settings, slug, form_id, today),
            json_example=json_example(self.settings, slug, form_id, today),
            base_url=self.settings.site.base_url.rstrip("/"),
        )
