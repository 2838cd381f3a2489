"""A group's editions through the API: list, build, read with figures, preview, approve, send.

GET  /groups/{slug}/editions                               newest first (any editions permission)
POST /groups/{slug}/editions                               build the next draft (editions.edit)
GET  /groups/{slug}/editions/{edition_id}                  its items, version and figures
GET  /groups/{slug}/editions/{edition_id}/preview.html     the email as readers get it, minus personal links
GET  /groups/{slug}/editions/{edition_id}/preview.txt      its text part
POST /groups/{slug}/editions/{edition_id}/approve          approve the draft (editions.approve; four eyes)
POST /groups/{slug}/editions/{edition_id}/send             send now (editions.send): 202, then poll it

Building and approving are ``editions/build.py``'s; sending goes through the workspace's
own :class:`~newsletter.web.admin.sending.Sender` (the delivery runner under the send
lease, in a thread of the web process), so an API send and a press of the Send button
are one path, and a second send of the same edition is refused (409 ``already_sending``).
"""

from sqlmodel import Session
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from newsletter.core.errors import LeaseHeld, NotFoundError
from newsletter.core.i18n import available_languages, base_language, reader_language
from newsletter.core.models import Edition, Group
from newsletter.delivery.lease import describe
from newsletter.editions import build as library
from newsletter.editions import editing
from newsletter.editions.render import Renderer
from newsletter.feedback.figures import figures
from newsletter.web.admin.sending import EMAIL_POLICY, Sender
from newsletter.web.api.framework import Call, Endpoint, decode_cursor, encode_cursor
from newsletter.web.api.models import (
    EditionApprove,
    EditionBuild,
    EditionDetail,
    EditionList,
    EditionOut,
    EditionQuery,
    EditionSend,
    FiguresOut,
    PreviewQuery,
    Sending,
)

BASE = "/groups/{slug}/editions"
ONE = BASE + "/{edition_id}"
READERS = ("editions.edit", "editions.approve", "editions.send")


class Editions:
    """The editions routes, sharing one renderer and the sender of the web process."""

    def __init__(self, renderer: Renderer, sender: Sender) -> None:
        self.renderer = renderer
        self.sender = sender

    def _edition(self, session: Session, call: Call) -> Edition:
        edition_id = call.number("edition_id")
        edition = session.get(Edition, edition_id)
        group = session.get(Group, edition.group_id) if edition is not None else None
        if edition is None or group is None or group.slug != call.slug:
            raise NotFoundError(f"no edition #{edition_id} in group {call.slug!r}")
        return edition

    def _detail(self, session: Session, edition: Edition) -> EditionDetail:
        items = editing.items_of(session, edition.id or 0)
        numbers = figures(session, edition).as_dict()
        numbers.pop("edition_id", None)
        return EditionDetail(
            id=edition.id or 0,
            status=edition.status,
            subject=edition.subject,
            schedule=edition.schedule,
            period_key=edition.period_key,
            items=len(items),
            created_at=edition.created_at,
            version=edition.version,
            item_ids=[item.id or 0 for item in items],
            figures=FiguresOut(**numbers),
        )

    def listing(self, call: Call) -> EditionList:
        query: EditionQuery = call.query
        position = decode_cursor(query.cursor, {"offset": int})
        offset = position["offset"] if position else 0
        with call.site.transaction() as session:
            rows = library.list_editions(
                session, call.site.settings, group=call.slug, limit=query.limit + 1, offset=offset
            )
        data = [
            EditionOut(
                id=r.id,
                status=r.status,
                subject=r.subject,
                schedule=r.schedule,
                period_key=r.period_key,
                items=r.items,
                created_at=r.created_at,
            )
            for r in rows[: query.limit]
        ]
        following = encode_cursor({"offset": offset + query.limit}) if len(rows) > query.limit else None
        return EditionList(data=data, next_cursor=following)

    def build(self, call: Call) -> EditionDetail:
        body: EditionBuild = call.body
        with call.site.transaction() as session:
            edition = library.build(
                session,
                call.site.settings,
                self.renderer,
                call.slug,
                actor=call.actor.label,
                allow_empty=body.allow_empty,
            )
            return self._detail(session, edition)

    def get(self, call: Call) -> EditionDetail:
        with call.site.transaction() as session:
            return self._detail(session, self._edition(session, call))

    def _rendered(self, call: Call) -> tuple[str, str]:
        query: PreviewQuery = call.query
        settings = call.site.settings
        wanted = base_language(query.language) if query.language else ""
        language = (
            wanted if wanted in available_languages() else base_language(settings.group(call.slug).language)
        )
        with call.site.transaction() as session:
            content = library.content(session, settings, self._edition(session, call))
        rendered = self.renderer.render(
            content, reader_language(language, content.group.language), allow_large=True
        )
        return library.neutral(rendered, settings)

    def preview_html(self, call: Call) -> Response:
        html, _ = self._rendered(call)
        return HTMLResponse(html, headers={"content-security-policy": EMAIL_POLICY})

    def preview_text(self, call: Call) -> Response:
        _, text = self._rendered(call)
        return PlainTextResponse(text)

    def approve(self, call: Call) -> EditionDetail:
        body: EditionApprove = call.body
        with call.site.transaction() as session:
            edition = self._edition(session, call)
            library.approve(
                session,
                call.site.settings,
                self.renderer,
                edition.id or 0,
                actor=call.actor.label,
                version=body.version,
            )
            return self._detail(session, edition)

    def send(self, call: Call) -> Sending:
        with call.site.transaction() as session:
            edition_id = self._edition(session, call).id or 0
        try:
            self.sender.start(edition_id, call.actor.label)
        except LeaseHeld as held:
            raise LeaseHeld(
                f"edition #{edition_id} is already being sent by {describe(held.owner)} "
                f"(since {held.since:%H:%M:%S} UTC)",
                owner=held.owner,
                since=held.since,
            ) from None
        return Sending(id=edition_id, status="sending")

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "GET",
                BASE,
                "editions",
                "The group's editions, newest first",
                READERS,
                self.listing,
                EditionList,
                query=EditionQuery,
                tag="editions",
            ),
            Endpoint(
                "POST",
                BASE,
                "edition-build",
                "Build the next draft from the approved items waiting",
                "editions.edit",
                self.build,
                EditionDetail,
                body=EditionBuild,
                status=201,
                creates=True,
                tag="editions",
                errors=(409,),
            ),
            Endpoint(
                "GET",
                ONE,
                "edition",
                "One edition: its items, version and figures",
                READERS,
                self.get,
                EditionDetail,
                tag="editions",
            ),
            Endpoint(
                "GET",
                ONE + "/preview.html",
                "edition-preview-html",
                "The email's HTML, without personal links",
                READERS,
                self.preview_html,
                "text/html",
                query=PreviewQuery,
                tag="editions",
            ),
            Endpoint(
                "GET",
                ONE + "/preview.txt",
                "edition-preview-text",
                "The email's text part",
                READERS,
                self.preview_text,
                "text/plain",
                query=PreviewQuery,
                tag="editions",
            ),
            Endpoint(
                "POST",
                ONE + "/approve",
                "edition-approve",
                "Approve the draft for sending",
                "editions.approve",
                self.approve,
                EditionDetail,
                body=EditionApprove,
                tag="editions",
                errors=(409,),
            ),
            Endpoint(
                "POST",
                ONE + "/send",
                "edition-send",
                "Send it now (answers at once; poll the edition)",
                "editions.send",
                self.send,
                Sending,
                body=EditionSend,
                status=202,
                tag="editions",
                errors=(409,),
            ),
        ]
