"""The data model: SQLModel tables and their status vocabularies.

The site folder declares groups and sources; these tables remember everything that
happens to them. Uniqueness rules carry the product's promises:

* ``Delivery(edition_id, subscriber_id)`` is unique: nobody gets an edition twice;
* ``Edition(group_id, schedule, period_key)`` is unique: a period is built once;
* ``EditionItem(group_id, item_id)`` is unique: an item is offered to a group once;
* ``Membership(subscriber_id, group_id)`` is unique, and its status is sticky.

All timestamps are timezone-aware UTC (see :class:`UTCDateTime`).
"""

# No `from __future__ import annotations` here: SQLModel reads the annotations at runtime.
import enum
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel, UniqueConstraint


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A datetime column that refuses naive values and always reads back aware UTC.

    SQLite keeps no zone, PostgreSQL does; this makes both behave the same.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(enum_cls: type[enum.StrEnum]) -> Any:
    # Stored as its plain value in a VARCHAR: no PostgreSQL enum types to migrate.
    return sa.Enum(enum_cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


def _when(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class MembershipStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def sticky(self) -> bool:
        """An ended membership stays ended whatever an import says; only a new opt-in revives it."""
        return self in {MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED, MembershipStatus.COMPLAINED}


class ItemStatus(enum.StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"


class ItemKind(enum.StrEnum):
    NEWS = "news"
    PRODUCT = "product"
    REPORT = "report"
    SURVEY = "survey"
    EVENT = "event"
    MEETING = "meeting"


class EditionStatus(enum.StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    # Its messages went to the outbox folder (.eml files) only: nobody received it, and
    # it can still be sent for real.
    WRITTEN = "written"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Group(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=63)
    name: str
    language: str = Field(max_length=35)
    timezone: str = Field(max_length=64)
    created_at: datetime = _when(default_factory=utcnow)


# SQLite reuses the id of a deleted row unless told not to; signed links and VERP
# addresses name ids, so an erased person's old links must never reach someone new.
NO_ID_REUSE = {"sqlite_autoincrement": True}


class Subscriber(SQLModel, table=True):
    __table_args__ = NO_ID_REUSE

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    # The address folded to lower case: one subscriber per mailbox, whatever the spelling.
    email_key: str = Field(unique=True, max_length=320)
    name: str | None = None
    language: str | None = Field(default=None, max_length=35)
    # The site's custom fields ([fields.NAME] in newsletter.toml): name -> value, only
    # the ones that are set. Assign a new dict to change it (in-place edits are not seen).
    field_values: dict[str, str] | None = Field(default=None, sa_type=sa.JSON)
    # What the workspace's search looks in: address, name and field values, case-folded
    # (kept up to date by :func:`_search_key` on every insert and update).
    search_key: str = Field(default="", sa_type=sa.Text, sa_column_kwargs={"server_default": ""})
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)


def search_key(subscriber: Subscriber) -> str:
    """The text a search matches: address, name and field values, case-folded, one per line."""
    return search_text(subscriber.email, subscriber.name, subscriber.field_values)


def search_text(email: str, name: str | None, field_values: dict[str, str] | None = None) -> str:
    """:func:`search_key` of a subscriber not made as an object (a Core insert sets it itself)."""
    return "\n".join([email, name or "", *(field_values or {}).values()]).casefold()


@sa.event.listens_for(Subscriber, "before_insert")
@sa.event.listens_for(Subscriber, "before_update")
def _search_key(mapper: Any, connection: Any, target: Subscriber) -> None:
    target.search_key = search_key(target)


class Membership(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("subscriber_id", "group_id"),
        # A group's members by state: the list page's counts and status filter.
        sa.Index("ix_membership_group_status", "group_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id", index=True)
    status: MembershipStatus = Field(sa_type=_enum(MembershipStatus), index=True)
    source: str = ""
    consent_text: str | None = None
    consent_ip: str | None = Field(default=None, max_length=45)
    consent_at: datetime | None = _when(default=None)
    confirmed_at: datetime | None = _when(default=None)
    status_changed_at: datetime = _when(default_factory=utcnow)
    bounce_score: float = 0.0
    created_at: datetime = _when(default_factory=utcnow)
    # The topics the member chose on the preferences page, as a JSON list (audience/topics.py);
    # None: no choice, every item.
    topics: str | None = None


class Consent(SQLModel, table=True):
    """Every opt-in asked for, append-only: who, which list, when, from where, the text agreed to.

    A row is never changed, except ``confirmed_at``, filled once when its confirmation
    link is used (a conditional update, so a link works once even when two clicks race).
    The membership's ``consent_*`` fields hold the consent in force: the one confirmed
    last (or, for a membership that is still pending, its first request).
    """

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id")
    at: datetime = _when(default_factory=utcnow)
    source: str = Field(default="", max_length=40)
    text: str | None = None
    ip: str | None = Field(default=None, max_length=45)
    confirmed_at: datetime | None = _when(default=None)


class ConfirmationMail(SQLModel, table=True):
    """The queue of double opt-in emails: one row per sign-up, sent by the worker or daemon.

    A sign-up only adds a row (``audience/selfservice.py``), so the page answers at once
    and alike for every address, whether or not the relay is up;
    ``delivery/confirmations.py`` claims due rows (``sending`` until ``due_at``, a lease),
    sends them and records the result. A row outlives a restart and is retried.
    """

    __tablename__ = "confirmation_mail"
    __table_args__ = (sa.Index("ix_confirmation_mail_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    consent_id: int = Field(foreign_key="consent.id", unique=True, ondelete="CASCADE")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id")
    # The language the person chose on the form, for the email.
    language: str | None = Field(default=None, max_length=35)
    status: DeliveryStatus = Field(sa_type=_enum(DeliveryStatus), default=DeliveryStatus.QUEUED)
    queued_at: datetime = _when(default_factory=utcnow)
    due_at: datetime = _when(default_factory=utcnow)
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=120)
    sent_at: datetime | None = _when(default=None)
    last_error: str | None = None


class Source(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    url: str
    topic: str = ""
    etag: str | None = None
    last_modified: str | None = None
    last_fetched_at: datetime | None = _when(default=None)
    last_error: str | None = None
    # Health: the last fetch that worked, and how many have failed in a row since.
    last_success_at: datetime | None = _when(default=None)
    failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = _when(default_factory=utcnow)


class Item(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("source_id", "guid"), NO_ID_REUSE)

    id: int | None = Field(default=None, primary_key=True)
    title: str
    url: str | None = None
    canonical_url: str | None = Field(default=None, index=True)
    # Identity for de-duplication: the canonical URL, or the title and date when there is none.
    fingerprint: str = Field(unique=True, max_length=64)
    summary_md: str = ""
    summary_html: str = ""
    kind: ItemKind = Field(sa_type=_enum(ItemKind), default=ItemKind.NEWS)
    topic: str = Field(default="", index=True)
    language: str = Field(default="en", max_length=35)
    status: ItemStatus = Field(sa_type=_enum(ItemStatus), default=ItemStatus.PROPOSED, index=True)
    all_groups: bool = True
    source_id: int | None = Field(default=None, foreign_key="source.id")
    guid: str | None = None
    editor: str | None = None
    origin: str | None = None
    published_at: datetime | None = _when(default=None)
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)
    event_start: datetime | None = _when(default=None)
    event_end: datetime | None = _when(default=None)
    event_place: str | None = None
    deadline: date | None = None
    # The item's image (``collecting/images.py``): where it came from, the resized copy
    # the site serves at ``/images/{image_name}``, its size, and its alt text (None: none
    # given yet; ``newsletter check`` warns, and the email shows it as decorative).
    image_source: str | None = None
    image_name: str | None = Field(default=None, max_length=80)
    image_width: int | None = None
    image_height: int | None = None
    image_alt: str | None = None


class Provenance(SQLModel, table=True):
    """One way a story reached the pool: a feed entry, a page article, a file or an editor.

    An item has one row per source entry that brought it; the same story merged from
    three feeds keeps three. ``(source_id, guid)`` is how a collect knows an entry it has
    seen. ``merged`` says why a later row joined its item ("url": the same canonical URL;
    "similar": alike enough, ``similarity`` the score), so an editor can split it off.
    """

    __table_args__ = (UniqueConstraint("source_id", "guid"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True, ondelete="CASCADE")
    source_id: int | None = Field(default=None, foreign_key="source.id")
    guid: str | None = Field(default=None, max_length=1000)
    origin: str = Field(default="", max_length=200)
    url: str | None = None
    title: str = ""
    summary_html: str = ""
    published_at: datetime | None = _when(default=None)
    merged: str | None = Field(default=None, max_length=20)
    similarity: float | None = None
    added_at: datetime = _when(default_factory=utcnow)


class ItemTarget(SQLModel, table=True):
    """The groups an item is meant for, when it is not meant for every group."""

    item_id: int = Field(foreign_key="item.id", primary_key=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id", primary_key=True)


class ItemTranslation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("item_id", "language"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True, ondelete="CASCADE")
    language: str = Field(max_length=35)
    title: str
    summary_md: str = ""
    summary_html: str = ""


# The schedule name of an edition built by hand (workspace or `editions build`), not by a
# schedule file. A schedule is a standing order to send what it builds once approved; a
# manual edition goes out only when someone allowed to send says so (send now, or a
# planned moment), so approving one never sends it by itself.
MANUAL_SCHEDULE = "manual"


class Edition(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("group_id", "schedule", "period_key"), NO_ID_REUSE)

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="group.id", index=True)
    schedule: str = Field(default=MANUAL_SCHEDULE, max_length=100)
    period_key: str = Field(max_length=64)
    template: str = Field(default="digest", max_length=100)
    subject_template: str = ""
    subject: str = ""
    status: EditionStatus = Field(sa_type=_enum(EditionStatus), default=EditionStatus.DRAFT)
    html: str | None = None
    text: str | None = None
    created_at: datetime = _when(default_factory=utcnow)
    approved_at: datetime | None = _when(default=None)
    sent_at: datetime | None = _when(default=None)
    # True while (and after) its send goes to the outbox folder instead of a relay: such a
    # run delivers nothing, ends ``written``, and a real send later starts afresh.
    outbox_only: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # The editor's own words above the items (Markdown), and subject lines per language
    # (JSON: {"de": "..."}) that replace the subject template in that language.
    intro_md: str = Field(default="", sa_column_kwargs={"server_default": ""})
    subjects: str = Field(default="{}", sa_column_kwargs={"server_default": "{}"})
    # One send planned for a moment (UTC): the scheduler's tick sends it when it is due.
    scheduled_at: datetime | None = _when(default=None)
    # Who last changed it (the four-eyes rule), and a counter that refuses stale forms.
    last_changed_by: str | None = Field(default=None, max_length=340)
    version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class EditionItem(SQLModel, table=True):
    # group_id repeats the edition's group so the database itself refuses an item
    # being offered to the same group twice.
    __table_args__ = (UniqueConstraint("group_id", "item_id"),)

    edition_id: int = Field(foreign_key="edition.id", primary_key=True, ondelete="CASCADE")
    item_id: int = Field(foreign_key="item.id", primary_key=True)
    group_id: int = Field(foreign_key="group.id")
    position: int = 0


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id"),
        # The queue: an edition's rows in one state, in id order. Claiming the next
        # batch reads only queued rows, however many were sent before them.
        sa.Index("ix_delivery_queue", "edition_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(foreign_key="edition.id")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    status: DeliveryStatus = Field(sa_type=_enum(DeliveryStatus), default=DeliveryStatus.QUEUED)
    attempts: int = 0
    next_attempt_at: datetime | None = _when(default=None)
    last_error: str | None = None
    message_id: str | None = None
    sent_at: datetime | None = _when(default=None)
    # Who claimed the row while it is ``sending`` (a runner's owner id, see lease.py); its
    # lease runs until ``next_attempt_at``.
    claimed_by: str | None = Field(default=None, max_length=120)


class SendLease(SQLModel, table=True):
    """Which process owns an edition's send (see runner.py), until when unless renewed."""

    __tablename__ = "send_lease"

    edition_id: int = Field(foreign_key="edition.id", primary_key=True, ondelete="CASCADE")
    owner: str = Field(max_length=120)
    acquired_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when(default_factory=utcnow)


class RateLimit(SQLModel, table=True):
    """A key's hits under one of the web pages' rate limits, shared by every ``serve``
    process on the database (``web/ratelimit.py``): ``hits`` in the window numbered
    ``window_start`` and ``previous_hits`` in the one before; keys idle longer are swept."""

    __tablename__ = "rate_limit"

    name: str = Field(primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=200)
    window_start: int = Field(sa_type=sa.BigInteger, index=True)
    hits: int = 0
    previous_hits: int = 0


class Probe(SQLModel, table=True):
    """A short VERP-signed message that checks an address an unverified bounce named.

    ``feedback`` asks for one (``sent_at`` is None), ``delivery/probes.py`` sends it; only
    a bounce to the probe's own address (``core/verp.py``, ``+pID``) ends the membership.
    A probe is open until it bounced or ``expires_at``; a membership has one open at most.
    """

    __table_args__ = NO_ID_REUSE

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id")
    # The Message-ID of the unverified report that asked for it.
    reason: str | None = None
    created_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when(default_factory=utcnow)
    sent_at: datetime | None = _when(default=None)
    message_id: str | None = None
    last_error: str | None = None
    bounced_at: datetime | None = _when(default=None)


# --- The workspace's people (accounts/): users, their grants, sign-in links and sessions.
# Secrets (sign-in tokens, session ids) are stored as their SHA-256, never as they are.


class User(SQLModel, table=True):
    """A person who signs in to the workspace (an editor, a contributor, an admin)."""

    __tablename__ = "user_account"
    __table_args__ = NO_ID_REUSE

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    # Folded like Subscriber.email_key: one account per mailbox, whatever the spelling.
    email_key: str = Field(unique=True, max_length=320)
    name: str = ""
    active: bool = True
    # argon2 hash (PHC string) for sites that allow a password; None: sign-in by link only.
    password_hash: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when(default_factory=utcnow)
    last_sign_in_at: datetime | None = _when(default=None)


class Grant(SQLModel, table=True):
    """A role given to a user on one group, or site-wide (``group_id`` None)."""

    __tablename__ = "user_grant"
    __table_args__ = (UniqueConstraint("user_id", "role", "group_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    role: str = Field(max_length=63)
    group_id: int | None = Field(default=None, foreign_key="group.id", ondelete="CASCADE")
    created_at: datetime = _when(default_factory=utcnow)


class SignInToken(SQLModel, table=True):
    """A one-time sign-in link: usable once, until ``expires_at``."""

    __tablename__ = "sign_in_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    created_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when(default_factory=utcnow)
    used_at: datetime | None = _when(default=None)


class UserSession(SQLModel, table=True):
    """A signed-in browser: it ends at ``expires_at`` (idle time) or when revoked."""

    __tablename__ = "user_session"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    created_at: datetime = _when(default_factory=utcnow)
    last_seen_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when(default_factory=utcnow)
    revoked_at: datetime | None = _when(default=None)
    # Shown in the user's list of sessions, to recognise a browser.
    user_agent: str = Field(default="", max_length=200)
    ip: str | None = Field(default=None, max_length=45)


class SubscriberUpload(SQLModel, table=True):
    """A CSV uploaded in the workspace, kept between its plan and the editor's confirmation.

    The plan (what each row would do) is shown first; "Import" applies the file only if
    planning it again still gives the same plan (``plan_digest``), so a list that
    changed meanwhile is never imported blindly. A row is deleted once applied and is
    useless after ``expires_at``.
    """

    __tablename__ = "subscriber_upload"

    # A random id, in the confirmation form's URL.
    id: str = Field(primary_key=True, max_length=64)
    group_id: int = Field(foreign_key="group.id", ondelete="CASCADE")
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    filename: str = Field(max_length=200)
    content: bytes = Field(sa_type=sa.LargeBinary)
    plan_digest: str = Field(max_length=64)
    created_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when(default_factory=utcnow)


class Event(SQLModel, table=True):
    """The append-only audit log: who did what, when, and through which channel."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when(default_factory=utcnow, index=True)
    kind: str = Field(max_length=40, index=True)
    actor: str = ""
    source: str = ""
    subscriber_id: int | None = Field(
        default=None, foreign_key="subscriber.id", index=True, ondelete="SET NULL"
    )
    group_id: int | None = Field(default=None, foreign_key="group.id")
    edition_id: int | None = Field(default=None, foreign_key="edition.id")
    item_id: int | None = Field(default=None, foreign_key="item.id", ondelete="SET NULL")
    detail: str = "{}"


# --- Notifications to the workspace's people (operations/notifications.py).


class Notice(SQLModel, table=True):
    """Something a person should know (a draft waits, a source fails), until a digest carries it.

    ``key`` names the event (``edition-draft:12``): UNIQUE with the user, so however
    often the state is looked at, a person is told once. ``sent_at`` is set when a digest
    carried it.
    """

    __tablename__ = "notice"
    __table_args__ = (UniqueConstraint("user_id", "key"), sa.Index("ix_notice_waiting", "sent_at", "user_id"))

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", ondelete="CASCADE")
    key: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    # The English sentence, and the same as a message (JSON, ``core/messages.py``) that the
    # digest translates; notices recorded before the message was kept have only the text.
    text: str
    message: str | None = None
    created_at: datetime = _when(default_factory=utcnow)
    sent_at: datetime | None = _when(default=None)


class NotificationSetting(SQLModel, table=True):
    """A person's notifications: on or off (the signed stop link), and when the last digest went."""

    __tablename__ = "notification_setting"

    user_id: int = Field(foreign_key="user_account.id", primary_key=True, ondelete="CASCADE")
    enabled: bool = True
    last_digest_at: datetime | None = _when(default=None)
    changed_at: datetime = _when(default_factory=utcnow)


# --- Outbound webhooks (delivery/webhooks/).


class WebhookStatus(enum.StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    # Every attempt failed: given up, kept to be seen in the workspace and `webhooks list`.
    FAILED = "failed"


class WebhookEvent(SQLModel, table=True):
    """An audit event some webhook may want, captured in the change's own transaction.

    ``audit.record`` adds one for every event ``core/webhookevents.py`` names, so the
    change and its capture commit together or not at all. The dispatcher turns each
    into one :class:`WebhookDelivery` per endpoint that wants it and deletes it, in one
    transaction. Erasing the person deletes their captured events (``ondelete``).
    """

    __tablename__ = "webhook_event"
    __table_args__ = NO_ID_REUSE

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=40)
    at: datetime = _when(default_factory=utcnow)
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="CASCADE")
    group_id: int | None = Field(default=None, foreign_key="group.id", ondelete="CASCADE")
    item_id: int | None = Field(default=None, foreign_key="item.id", ondelete="CASCADE")
    edition_id: int | None = Field(default=None, foreign_key="edition.id", ondelete="CASCADE")
    detail: str = "{}"


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: its signed body, and where its attempts stand.

    ``UNIQUE(endpoint, event_id)``: an event is queued once per endpoint, whoever
    dispatches it. A delivered row is never claimed again; a queued one is claimed under
    a lease (``lease_until``, ``lease_owner``) so two deliverers never post it at once.
    ``message_id`` is the ``webhook-id`` header, the same on every retry, for the
    receiver to recognise a repeat. The body names a member's address; erasing the
    person deletes the row (``ondelete``).
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint", "event_id"),
        sa.Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_delivery_endpoint", "endpoint", "id"),
        NO_ID_REUSE,
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint: str = Field(max_length=63)
    event_id: int
    message_id: str = Field(unique=True, max_length=64)
    topic: str = Field(max_length=40)
    group_id: int | None = Field(default=None, foreign_key="group.id", ondelete="CASCADE")
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="CASCADE")
    body: str
    status: WebhookStatus = Field(default=WebhookStatus.QUEUED, sa_type=_enum(WebhookStatus))
    attempts: int = 0
    created_at: datetime = _when(default_factory=utcnow)
    next_attempt_at: datetime = _when(default_factory=utcnow)
    lease_until: datetime | None = _when(default=None)
    lease_owner: str | None = Field(default=None, max_length=64)
    last_attempt_at: datetime | None = _when(default=None)
    delivered_at: datetime | None = _when(default=None)
    # The last answer: its HTTP status (None: no answer), the start of its body as
    # text (capped), or why there was no answer (refused, timed out, connection failed).
    last_status: int | None = None
    last_response: str = ""
    last_error: str = ""


# --- The JSON API's bearer tokens and idempotency keys (accounts/apitokens.py, web/api/).


class ApiToken(SQLModel, table=True):
    """A bearer token for ``/api/v1/``: it acts as its user, within the user's permissions.

    Only the token's SHA-256 is kept. ``name`` is unique across the site and never
    reused (a revoked token keeps its row), so ``token:NAME`` in the audit log always
    means the same token and the same person.
    """

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    name: str = Field(unique=True, max_length=63)
    read_only: bool = False
    created_at: datetime = _when(default_factory=utcnow)
    last_used_at: datetime | None = _when(default=None)
    revoked_at: datetime | None = _when(default=None)


class ApiIdempotency(SQLModel, table=True):
    """The stored answer to a POST sent with an ``Idempotency-Key``, per token, for a day.

    The same key with the same request (method, path, body digest) replays the answer;
    with another request it is refused, so a retried POST never creates a thing twice.
    """

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("token_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="api_token.id", ondelete="CASCADE")
    key: str = Field(max_length=200)
    request_digest: str = Field(max_length=64)
    status: int
    body: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = _when(default_factory=utcnow, index=True)
