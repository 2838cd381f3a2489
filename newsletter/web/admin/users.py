"""The users page (admins only, ``users.manage``): list, invite, change roles, remove.

GET  /admin/users                              the users, 50 a page, with their roles per group
POST /admin/users                              invite: create the user with a role (and groups),
                                               as ``newsletter users add``, and mail them a
                                               sign-in link as the sign-in page does
POST /admin/users/{user_id}/roles              give the user a role (on a group, or site-wide)
POST /admin/users/{user_id}/roles/remove       take one of the user's roles away
POST /admin/users/{user_id}/remove             remove the user (every session of theirs ends)

A role change applies from the user's next request: each request loads the person's
grants afresh. The site keeps an admin: taking away the last admin role, or removing
the last admin, is refused with a message (``accounts/users.py``).
"""

import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.accounts import signin, users
from newsletter.accounts.permissions import require
from newsletter.accounts.roles import role_named, site_roles
from newsletter.core.errors import InputError, NewsletterError, NotFoundError, StateError
from newsletter.core.i18n import translations
from newsletter.core.models import User
from newsletter.delivery.signinmail import sign_in_message
from newsletter.delivery.transports import Transport, send_one
from newsletter.web.admin.auth import Part, Signed, Workspace
from newsletter.web.admin.signin import LINK_MINUTES

log = logging.getLogger(__name__)
PAGE_SIZE = 50


class Users(Part):
    def __init__(self, workspace: Workspace, transport_factory: Callable[[], Transport]) -> None:
        super().__init__(workspace)
        self.transport_factory = transport_factory

    def routes(self) -> list[Route]:
        signed_in = self.workspace.signed_in
        return [
            Route("/admin/users", signed_in(self.listing), methods=["GET", "POST"]),
            Route("/admin/users/{user_id}/roles", signed_in(self.grant), methods=["POST"]),
            Route("/admin/users/{user_id}/roles/remove", signed_in(self.revoke), methods=["POST"]),
            Route("/admin/users/{user_id}/remove", signed_in(self.remove), methods=["POST"]),
        ]

    # -- the page --------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        signed: Signed,
        *,
        status: int = 200,
        done: str = "",
        error: str | NewsletterError = "",
        invite: dict[str, Any] | None = None,
    ) -> Response:
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1
        with self.site.transaction() as session:
            found, total = users.people(session, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        roles = site_roles(self.settings)
        return self.pages.page(
            request,
            "admin/users.html.j2",
            language=signed.language,
            status=status,
            actor=signed.actor,
            people=found,
            page_number=number,
            pages=max(1, -(-total // PAGE_SIZE)),
            total=total,
            roles=[(name, role.site_wide) for name, role in sorted(roles.items())],
            groups={slug: config.name for slug, config in self.settings.groups.items()},
            done=done,
            error=error,
            invite=invite or {"email": "", "name": "", "role": "", "groups": []},
        )

    async def _answer(
        self, request: Request, signed: Signed, act: Callable[[FormData], str], **keep: Any
    ) -> Response:
        """Run ``act`` on the posted form and show the page with what it did, or why it did nothing."""
        require(signed.actor, "users.manage", None)
        form = await self.pages.form(request, max_fields=20 + len(self.settings.groups))
        if form is None:
            return self.pages.rejected(request, signed.language)
        try:
            done = await run_in_threadpool(act, form)
        except StateError as exc:
            return await run_in_threadpool(self._problem, request, signed, 409, exc, form, keep)
        except (InputError, NotFoundError) as exc:
            return await run_in_threadpool(self._problem, request, signed, 400, exc, form, keep)
        return await run_in_threadpool(lambda: self._page(request, signed, done=done))

    def _problem(
        self,
        request: Request,
        signed: Signed,
        status: int,
        error: NewsletterError,
        form: FormData,
        keep: dict[str, Any],
    ) -> Response:
        invite = None
        if keep.get("invite"):
            invite = {
                "email": str(form.get("email", "")),
                "name": str(form.get("name", "")),
                "role": str(form.get("role", "")),
                "groups": [str(g) for g in form.getlist("group")],
            }
        return self._page(request, signed, status=status, error=error, invite=invite)

    async def listing(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "users.manage", None)
        if request.method == "POST":
            return await self._answer(request, signed, lambda form: self._invite(form, signed), invite=True)
        return await run_in_threadpool(self._page, request, signed)

    # -- the acts --------------------------------------------------------------------------

    def _user(self, request: Request) -> User:
        try:
            user_id = int(request.path_params["user_id"])
        except ValueError:
            raise NotFoundError("no such user") from None
        with self.site.transaction() as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFoundError("no such user")
            session.expunge(user)
        return user

    def _check_role(self, role: str, groups: list[str]) -> None:
        """Say in the page's words what ``users.add`` would refuse in the command line's."""
        if not role:
            raise InputError("choose the role to give")
        chosen = role_named(self.settings, role)
        if chosen.site_wide and groups:
            raise InputError("the role {role} applies to the whole site: choose no group", role=role)
        if not chosen.site_wide and not groups:
            raise InputError("the role {role} is given per group: choose at least one group", role=role)

    def _invite(self, form: FormData, signed: Signed) -> str:
        gettext = translations(signed.language).gettext
        email, name = str(form.get("email", "")).strip(), str(form.get("name", "")).strip()
        role, groups = str(form.get("role", "")), [str(group) for group in form.getlist("group")]
        if not email:
            raise InputError("give the address of the person to invite")
        self._check_role(role, groups)
        actor = signed.actor.label
        with self.site.transaction() as session:
            if users.find(session, email) is not None:
                raise InputError(
                    "{email} already has an account: give them a role in the list below", email=email
                )
            users.add(session, self.settings, email, role, groups, actor=actor, name=name)
            link = signin.login_link(session, email, now=self.workspace.clock(), actor=actor)
        message = sign_in_message(
            self.settings,
            user_id=link.user_id,
            email=link.email,
            name=link.name,
            url=link.url(self.settings),
            minutes=LINK_MINUTES,
            invited_by=signed.actor.email,
        )
        try:
            send_one(self.transport_factory, message)
        except NewsletterError as exc:
            log.warning("could not mail an invitation: %s", exc)
            return gettext(
                "%(email)s was added, but the email with their sign-in link could not be sent "
                "(%(error)s); they can ask for a link on the sign-in page"
            ) % {"email": link.email, "error": exc}
        return gettext("%(email)s was added and a sign-in link is on its way to them") % {"email": link.email}

    async def grant(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "users.manage", None)
        user = await run_in_threadpool(self._user, request)
        gettext = translations(signed.language).gettext

        def act(form: FormData) -> str:
            role, group = str(form.get("role", "")), str(form.get("group", ""))
            groups = [group] if group else []
            self._check_role(role, groups)
            with self.site.transaction() as session:
                added = users.add(session, self.settings, user.email, role, groups, actor=signed.actor.label)
            if not added.new_grants:
                return gettext("%(email)s already had that role") % {"email": user.email}
            return gettext("%(email)s is now %(roles)s") % {
                "email": user.email,
                "roles": ", ".join(added.new_grants),
            }

        return await self._answer(request, signed, act)

    async def revoke(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "users.manage", None)
        user = await run_in_threadpool(self._user, request)
        gettext = translations(signed.language).gettext

        def act(form: FormData) -> str:
            try:
                grant_id = int(str(form.get("grant", "")))
            except ValueError:
                raise InputError("choose the role to take away") from None
            with self.site.transaction() as session:
                taken = users.revoke(session, self.settings, user.id or 0, grant_id, actor=signed.actor.label)
            return gettext("%(email)s is no longer %(role)s") % {"email": user.email, "role": taken}

        return await self._answer(request, signed, act)

    async def remove(self, request: Request, signed: Signed) -> Response:
        require(signed.actor, "users.manage", None)
        user = await run_in_threadpool(self._user, request)
        gettext = translations(signed.language).gettext

        def act(form: FormData) -> str:
            if form.get("confirm") != "yes":
                raise InputError("tick the box to confirm that {email} should be removed", email=user.email)
            with self.site.transaction() as session:
                ended = users.remove(session, user.email, actor=signed.actor.label, settings=self.settings)
            return gettext("%(email)s was removed (%(count)d session(s) ended)") % {
                "email": user.email,
                "count": ended,
            }

        return await self._answer(request, signed, act)
