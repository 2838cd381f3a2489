"""A group's members through the API: list (search, status, keyset pages), add, remove, import, export.

GET  /groups/{slug}/subscribers           a page of members in address order   (subscribers.read)
POST /groups/{slug}/subscribers           add one member                        (subscribers.write)
POST /groups/{slug}/subscribers/remove    unsubscribe one member                (subscribers.write)
POST /groups/{slug}/subscribers/import    a CSV body: each row's verdict; ``?dry_run=true`` writes nothing
GET  /groups/{slug}/subscribers/export    the CSV of ``subscribers export``     (subscribers.export)

The same library functions as the workspace's subscriber pages and the CLI
(``audience/browse.py``, ``audience/subscribers.py``, ``audience/export.py``). The cursor
is the last member's row id, as the pages' (``browse.py``): no address travels in a URL.
"""

import io
from collections.abc import Iterator

from starlette.responses import Response, StreamingResponse

from newsletter.audience import browse, export
from newsletter.audience import subscribers as library
from newsletter.audience.subscribers import RowNote
from newsletter.audience.uploads import MAX_BYTES
from newsletter.core import audit
from newsletter.core.site import get_group
from newsletter.web.api.framework import Call, Endpoint, decode_cursor, encode_cursor
from newsletter.web.api.models import (
    ExportQuery,
    ImportOut,
    ImportQuery,
    MemberAdd,
    MemberAdded,
    MemberList,
    MemberOut,
    MemberQuery,
    MemberRemove,
    MemberRemoved,
    RowNoteOut,
    RowVerdictOut,
)

BASE = "/groups/{slug}/subscribers"
EXPORT_CHUNK = 1000


def list_members(call: Call) -> MemberList:
    query: MemberQuery = call.query
    position = decode_cursor(query.cursor, {"after": int})
    wanted = browse.Query(
        search=query.q or "",
        status=query.status,
        after=position["after"] if position else None,
        size=query.limit,
    )
    with call.site.transaction() as session:
        page = browse.page(session, call.site.settings, call.slug, wanted)
    data = [MemberOut(**{**vars(row.member), "fields": dict(row.member.fields)}) for row in page.rows]
    following = encode_cursor({"after": page.next_after}) if page.next_after is not None else None
    return MemberList(data=data, next_cursor=following, counts=page.counts)


def add(call: Call) -> MemberAdded:
    body: MemberAdd = call.body
    with call.site.transaction() as session:
        outcome = library.add(
            session,
            call.site.settings,
            call.slug,
            body.email,
            actor=call.actor.label,
            name=body.name or None,
            language=body.language or None,
            fields=body.fields,
            source="api",
        )
    return MemberAdded(email=body.email.strip(), outcome=outcome)


def remove(call: Call) -> MemberRemoved:
    body: MemberRemove = call.body
    with call.site.transaction() as session:
        removed = library.remove(
            session, call.site.settings, call.slug, body.email, actor=call.actor.label, source="api"
        )
    return MemberRemoved(email=body.email.strip(), removed=removed)


def _notes(notes: list[RowNote]) -> list[RowNoteOut]:
    return [RowNoteOut(line=n.line, email=n.email, reason=n.reason) for n in notes]


def import_csv(call: Call) -> ImportOut:
    """Every row's verdict; without ``dry_run`` the rows are written, all in one transaction."""
    query: ImportQuery = call.query
    with call.site.transaction() as session:
        report = library.import_data(
            session,
            call.site.settings,
            call.slug,
            call.raw,
            query.filename,
            actor=call.actor.label,
            dry_run=query.dry_run,
        )
    return ImportOut(
        dry_run=report.dry_run,
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        rows=[
            RowVerdictOut(line=r.line, email=r.email, verdict=r.verdict, changes=list(r.changes))
            for r in report.rows
        ],
        rejected=_notes(report.rejected),
        duplicates=_notes(report.duplicates),
        kept=_notes(report.kept),
        warnings=_notes(report.warnings),
        ignored_columns=list(report.ignored_columns),
    )


def export_csv(call: Call) -> Response:
    """The CSV streamed as it is read, after an ``export`` line in the audit log (as the page does)."""
    query: ExportQuery = call.query
    statuses: tuple[str, ...] = () if query.status == "all" else (str(query.status),)
    settings = call.site.settings
    with call.site.transaction() as session:
        group = get_group(session, settings, call.slug)
        audit.record(
            session,
            "export",
            actor=call.actor.label,
            source="api",
            group_id=group.id,
            statuses=list(statuses) or "all",
        )

    def rows() -> Iterator[str]:
        with call.site.transaction() as session:
            buffer = io.StringIO()
            members = export.members(session, settings, call.slug, statuses)
            for count, _ in enumerate(export.write_rows(members, buffer, list(settings.fields))):
                if count % EXPORT_CHUNK == 0:
                    yield _take(buffer)
            yield _take(buffer)

    headers = {"content-disposition": f'attachment; filename="{call.slug}-members.csv"'}
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


ENDPOINTS = [
    Endpoint(
        "GET",
        BASE,
        "subscribers",
        "A page of the group's members in address order, with search and status",
        "subscribers.read",
        list_members,
        MemberList,
        query=MemberQuery,
        tag="subscribers",
    ),
    Endpoint(
        "POST",
        BASE,
        "subscriber-add",
        "Add one member (or update a known one)",
        "subscribers.write",
        add,
        MemberAdded,
        body=MemberAdd,
        status=201,
        creates=True,
        tag="subscribers",
        errors=(409,),
    ),
    Endpoint(
        "POST",
        BASE + "/remove",
        "subscriber-remove",
        "Unsubscribe one member",
        "subscribers.write",
        remove,
        MemberRemoved,
        body=MemberRemove,
        tag="subscribers",
    ),
    Endpoint(
        "POST",
        BASE + "/import",
        "subscribers-import",
        "Import a subscriber CSV (the body); each row's verdict. dry_run=true writes nothing",
        "subscribers.write",
        import_csv,
        ImportOut,
        query=ImportQuery,
        body="text/csv",
        creates=True,
        tag="subscribers",
        errors=(413,),
        extra={"max_body": MAX_BYTES},
    ),
    Endpoint(
        "GET",
        BASE + "/export",
        "subscribers-export",
        "The group's members as CSV (formulas neutralised)",
        "subscribers.export",
        export_csv,
        "text/csv",
        query=ExportQuery,
        tag="subscribers",
    ),
]
