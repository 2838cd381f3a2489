"""The JSON API's request and answer shapes, as pydantic models (the OpenAPI schemas come from them).

Answers are built from the library's records by the ``of`` class methods, so a route
handler stays one library call and one conversion. Lists are pages: ``data`` and a
``next_cursor`` (None on the last page) to send back as ``?cursor=``.
"""

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from newsletter.core.models import EditionStatus, Item, ItemKind, ItemStatus, MembershipStatus

Limit = Field(default=50, ge=1, le=200, description="How many to answer at most (1-200).")
Cursor = Field(default=None, max_length=200, description="The `next_cursor` of the previous page.")


class Strict(BaseModel):
    """A request body: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable code scripts may test (see docs/api.md).")
    message: str = Field(description="What went wrong, for a person to read.")


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- groups --------------------------------------------------------------------------------


class GroupOut(BaseModel):
    slug: str
    name: str
    language: str
    timezone: str
    permissions: list[str] = Field(description="What this token's user may do on the group.")


class GroupList(BaseModel):
    data: list[GroupOut]


# -- items ---------------------------------------------------------------------------------


class ItemQuery(Strict):
    status: ItemStatus | None = None
    topic: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)
    limit: int = Limit
    cursor: str | None = Cursor


class ItemOut(BaseModel):
    id: int
    title: str
    url: str | None
    summary_md: str
    summary_html: str
    kind: ItemKind
    topic: str
    language: str
    status: ItemStatus
    groups: list[str] = Field(description='The groups it is meant for; ["*"]: every group.')
    editor: str
    origin: str
    published_at: datetime
    event_start: datetime | None
    event_end: datetime | None
    event_place: str | None
    deadline: date | None
    version: str = Field(description="Send it back with a change to refuse it if the item moved since (409).")

    @classmethod
    def of(cls, item: Item, groups: list[str]) -> "ItemOut":
        return cls(
            id=item.id or 0,
            title=item.title,
            url=item.url,
            summary_md=item.summary_md,
            summary_html=item.summary_html,
            kind=ItemKind(item.kind),
            topic=item.topic,
            language=item.language,
            status=ItemStatus(item.status),
            groups=groups,
            editor=item.editor,
            origin=item.origin,
            published_at=item.published_at,
            event_start=item.event_start,
            event_end=item.event_end,
            event_place=item.event_place,
            deadline=item.deadline,
            version=item.updated_at.isoformat(),
        )


class ItemList(BaseModel):
    data: list[ItemOut]
    next_cursor: str | None


class ItemFields(Strict):
    """The fields a person writes; each may be left out of an edit."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    url: str | None = Field(default=None, max_length=2000)
    summary: str | None = Field(default=None, max_length=50_000, description="Markdown (no raw HTML).")
    kind: ItemKind | None = None
    topic: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, max_length=35)
    start: AwareDatetime | None = Field(default=None, description="An event's start, with its offset.")
    end: AwareDatetime | None = None
    place: str | None = Field(default=None, max_length=500)
    deadline: date | None = Field(default=None, description="A survey's answer deadline.")


class ItemCreate(ItemFields):
    title: str = Field(min_length=1, max_length=500)
    groups: list[str] | None = Field(
        default=None, max_length=100, description='Groups to target (default: this one); "*" every group.'
    )


class ItemEdit(ItemFields):
    groups: list[str] | None = Field(default=None, max_length=100, description="Retarget too (optional).")
    version: str | None = Field(default=None, max_length=64, description="The item's version you read.")


class ItemReview(Strict):
    decision: Literal["approve", "reject", "propose"]
    version: str | None = Field(default=None, max_length=64)


class ItemTarget(Strict):
    groups: list[str] = Field(
        min_length=1, max_length=100, description='The groups you may target; "*" every group.'
    )
    version: str | None = Field(default=None, max_length=64)


# -- subscribers ---------------------------------------------------------------------------


class MemberQuery(Strict):
    q: str | None = Field(default=None, max_length=200, description="A part of the address, name or a field.")
    status: MembershipStatus | None = None
    limit: int = Limit
    cursor: str | None = Cursor


class MemberOut(BaseModel):
    email: str
    name: str | None
    language: str | None
    status: str
    source: str
    since: str
    fields: dict[str, str]


class MemberList(BaseModel):
    data: list[MemberOut]
    next_cursor: str | None
    counts: dict[str, int] = Field(description="The whole group's members per status.")


class MemberAdd(Strict):
    email: str = Field(min_length=1, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=35)
    fields: dict[str, str] = Field(default_factory=dict, max_length=50)


class MemberAdded(BaseModel):
    email: str
    outcome: Literal["added", "updated", "unchanged"]


class MemberRemove(Strict):
    email: str = Field(min_length=1, max_length=320)


class MemberRemoved(BaseModel):
    email: str
    removed: bool = Field(description="False: the member was already not active.")


class ImportQuery(Strict):
    dry_run: bool = Field(default=False, description="Plan only: each row's verdict, nothing written.")
    filename: str = Field(
        default="api.csv", min_length=1, max_length=200, description="Named in the audit log."
    )


class RowNoteOut(BaseModel):
    line: int
    email: str
    reason: str


class RowVerdictOut(BaseModel):
    line: int
    email: str
    verdict: str
    changes: list[str]


class ImportOut(BaseModel):
    dry_run: bool
    added: int
    updated: int
    unchanged: int
    rows: list[RowVerdictOut]
    rejected: list[RowNoteOut]
    duplicates: list[RowNoteOut]
    kept: list[RowNoteOut]
    warnings: list[RowNoteOut]
    ignored_columns: list[str]


class ExportQuery(Strict):
    status: MembershipStatus | Literal["all"] = MembershipStatus.ACTIVE


# -- editions ------------------------------------------------------------------------------


class EditionQuery(Strict):
    limit: int = Limit
    cursor: str | None = Cursor


class FiguresOut(BaseModel):
    delivered: int
    deferred: int
    failed: int
    skipped: int
    waiting: int
    bounced_hard: int
    bounced_soft: int
    complained: int
    unsubscribed: int
    written: int


class EditionOut(BaseModel):
    id: int
    status: EditionStatus
    subject: str
    schedule: str
    period_key: str
    items: int
    created_at: datetime


class EditionList(BaseModel):
    data: list[EditionOut]
    next_cursor: str | None


class EditionDetail(EditionOut):
    version: int = Field(description="Send it back with approve to refuse a stale approval (409).")
    item_ids: list[int]
    figures: FiguresOut


class EditionBuild(Strict):
    allow_empty: bool = Field(default=False, description="Build even if no approved item waits.")


class EditionApprove(Strict):
    version: int | None = Field(default=None, ge=0, description="The edition's version you read.")


class EditionSend(Strict):
    pass


class Sending(BaseModel):
    id: int
    status: Literal["sending"]


class PreviewQuery(Strict):
    language: str | None = Field(default=None, max_length=35)


# -- sources -------------------------------------------------------------------------------


class SourceOut(BaseModel):
    name: str
    url: str
    topic: str
    groups: list[str] = Field(description='The groups it feeds that you may see; ["*"]: every group.')
    items: int
    last_fetched_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failures: int = Field(description="Failed fetches in a row since the last success.")


class SourceList(BaseModel):
    data: list[SourceOut]


class FetchNow(Strict):
    pass


class FetchReport(BaseModel):
    source: str
    added: int
    seen: int
    not_modified: bool
    error: str | None
    failures: int
