"""Subscribers and their memberships: import, add, remove, forget (listing and export: ``export.py``).

One :class:`Subscriber` per mailbox; one :class:`Membership` per subscriber and group.
An unsubscribed, bounced or complained membership is sticky: no import or ``add``
revives it (only a new confirmed opt-in does). Every change writes an audit event,
and its detail never holds personal data, so erasing a person erases them everywhere.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, delete
from sqlmodel import Session, col, select

from newsletter.audience.addresses import Address, clean_name, email_key, parse_address
from newsletter.audience.csvfile import CsvRow
from newsletter.audience.fields import clean_values, merged
from newsletter.audience.formats import Format, parse
from newsletter.core import audit, states
from newsletter.core.errors import (
    ImportFileError,
    InputError,
    InvalidAddress,
    NotFoundError,
    TransitionError,
)
from newsletter.core.language import normalize_language
from newsletter.core.messages import reason
from newsletter.core.models import (
    Delivery,
    Event,
    Group,
    Membership,
    MembershipStatus,
    Subscriber,
    utcnow,
)
from newsletter.core.sections import FieldConfig
from newsletter.core.settings import Settings
from newsletter.core.site import get_group


@dataclass(frozen=True)
class RowNote:
    line: int
    email: str
    reason: str


@dataclass(frozen=True)
class RowVerdict:
    """What the import does (or would do) with one person's row: ``added``, ``updated``
    (with the fields that change), ``unchanged``, or the ended state it leaves alone."""

    line: int
    email: str
    verdict: str
    changes: tuple[str, ...] = ()


@dataclass
class ImportReport:
    file: str
    group: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    # Rows the file marks as never to be mailed (listmonk's blocklisted), recorded as unsubscribed.
    suppressed: int = 0
    rejected: list[RowNote] = field(default_factory=list)
    duplicates: list[RowNote] = field(default_factory=list)
    kept: list[RowNote] = field(default_factory=list)
    warnings: list[RowNote] = field(default_factory=list)
    # Rows read but not imported on purpose (a disabled listmonk subscriber, an overlong line).
    skipped: list[RowNote] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False
    rows: list[RowVerdict] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"rejected {len(self.rejected)}"
        )
        if self.suppressed:
            text += f", suppressed {self.suppressed}"
        if self.skipped:
            text += f", skipped {len(self.skipped)}"
        return text

    def digest(self) -> str:
        """A fingerprint of every verdict: equal digests, the same import."""
        verdicts = {
            "rows": [asdict(r) for r in self.rows],
            **{name: [asdict(n) for n in getattr(self, name)] for name in ("rejected", "duplicates")},
        }
        return hashlib.sha256(json.dumps(verdicts, sort_keys=True).encode()).hexdigest()


@dataclass
class _Candidate:
    address: Address
    line: int
    name: str | None
    language: str | None
    fields: dict[str, str] = field(default_factory=dict)
    # Record the person as unsubscribed, never as a member (see ``CsvRow.suppress``).
    suppress: bool = False


def _differences(subscriber: Subscriber, candidate: _Candidate) -> list[str]:
    """What the candidate's row would change on the person: a value given and different."""
    changed = []
    if candidate.name and candidate.name != subscriber.name:
        changed.append("name")
    if candidate.language and candidate.language != subscriber.language:
        changed.append("language")
    current = subscriber.field_values or {}
    changed += [name for name, value in candidate.fields.items() if current.get(name) != value]
    return changed


def _member_changes(subscriber: Subscriber, candidate: _Candidate) -> list[str]:
    changed = _differences(subscriber, candidate)
    if "name" in changed:
        subscriber.name = candidate.name
    if "language" in changed:
        subscriber.language = candidate.language
    if set(changed) - {"name", "language"}:
        subscriber.field_values = merged(subscriber.field_values, candidate.fields)
    if changed:
        subscriber.updated_at = utcnow()
    return changed


def _row_fields(
    row: CsvRow, specs: Mapping[str, FieldConfig], report: ImportReport, email: str
) -> dict[str, str]:
    values, problems = clean_values(specs, row.fields)
    for problem in problems:
        report.warnings.append(RowNote(row.line, email, f"{problem}; left as it was"))
    return values


def _candidates(
    rows: Iterable[CsvRow], report: ImportReport, specs: Mapping[str, FieldConfig]
) -> list[_Candidate]:
    """Validate each row and merge rows that name the same mailbox."""
    seen: dict[str, _Candidate] = {}
    for row in rows:
        try:
            address = parse_address(row.email)
        except InvalidAddress as exc:
            report.rejected.append(RowNote(row.line, row.email, str(exc)))
            continue
        language = None
        if row.language:
            try:
                language = normalize_language(row.language)
            except ValueError as exc:
                report.warnings.append(RowNote(row.line, address.email, f"{exc}; language left unset"))
        name = clean_name(row.name) or clean_name(address.display_name)
        values = _row_fields(row, specs, report, address.email)
        first = seen.get(address.key)
        if first is None:
            seen[address.key] = _Candidate(address, row.line, name, language, values, row.suppress)
            continue
        report.duplicates.append(RowNote(row.line, row.email, f"same address as line {first.line}"))
        first.name = first.name or name
        first.language = first.language or language
        first.fields = {**values, **first.fields}
        # Any row of the address saying "never mail" wins: suppression is the safe reading.
        first.suppress = first.suppress or row.suppress
    return list(seen.values())


def _existing(session: Session, keys: list[str]) -> dict[str, Subscriber]:
    found: dict[str, Subscriber] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for subscriber in session.exec(select(Subscriber).where(col(Subscriber.email_key).in_(chunk))):
            found[subscriber.email_key] = subscriber
    return found


def _memberships(session: Session, group: Group) -> dict[int, Membership]:
    query = select(Membership).where(Membership.group_id == group.id)
    return {m.subscriber_id: m for m in session.exec(query)}


def import_csv(
    session: Session,
    settings: Settings,
    group_slug: str,
    path: Path,
    *,
    actor: str,
    dry_run: bool = False,
    strict: bool = False,
    format: Format = "auto",
) -> ImportReport:
    """Import a subscriber file into a group; the caller's transaction makes it all-or-nothing.

    With ``dry_run`` nothing is written, not even to the session: the report says
    what the import would do (``_plan``). With ``strict``, a file with a rejected row
    is reported the same way and nothing is written; the caller says so. ``format`` is
    our CSV, a listmonk export or a Mailman member list (``audience/formats.py``).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(
            "cannot read {path}: {reason}", path=str(path), reason=str(exc.strerror or exc)
        ) from None
    return import_data(
        session,
        settings,
        group_slug,
        data,
        str(path),
        actor=actor,
        dry_run=dry_run,
        strict=strict,
        format=format,
    )


def import_data(
    session: Session,
    settings: Settings,
    group_slug: str,
    data: bytes,
    filename: str,
    *,
    actor: str,
    dry_run: bool = False,
    strict: bool = False,
    format: Format = "auto",
) -> ImportReport:
    """:func:`import_csv` for a file already in memory (an upload in the workspace)."""
    group = get_group(session, settings, group_slug)
    csv_file = parse(data, filename, settings.fields, format)
    report = ImportReport(
        file=filename,
        group=group_slug,
        dry_run=dry_run,
        ignored_columns=csv_file.ignored_columns,
        skipped=[RowNote(*note) for note in csv_file.skipped],
        warnings=[RowNote(*note) for note in csv_file.warnings],
    )
    candidates = _candidates(csv_file.rows, report, settings.fields)
    people = _existing(session, [c.address.key for c in candidates])
    members = _memberships(session, group)
    source = f"import:{Path(filename).name}"
    write = not dry_run and not (strict and report.rejected)
    for candidate in candidates:
        subscriber = people.get(candidate.address.key)
        changes = tuple(_differences(subscriber, candidate)) if subscriber and not candidate.suppress else ()
        if write:
            outcome = _apply(session, group, candidate, subscriber, members, source=source, actor=actor)
        else:
            outcome = _plan(candidate, subscriber, members)
        report.rows.append(RowVerdict(candidate.line, candidate.address.email, outcome, changes))
        if outcome == "added":
            report.added += 1
        elif outcome == "updated":
            report.updated += 1
        elif outcome == "suppressed":
            report.suppressed += 1
        else:
            report.unchanged += 1
            if candidate.suppress:
                reason = f"left {outcome}: already not mailed"
                report.kept.append(RowNote(candidate.line, candidate.address.email, reason))
            elif outcome != "unchanged":
                report.kept.append(
                    RowNote(
                        candidate.line,
                        candidate.address.email,
                        f"left {outcome}: only a new opt-in re-subscribes",
                    )
                )
    return report


def _plan(candidate: _Candidate, subscriber: Subscriber | None, members: dict[int, Membership]) -> str:
    """What :func:`_apply` would answer for the candidate, changing nothing (a dry run).

    It follows ``_apply`` step by step; ``tests/test_subscribers_import.py`` checks that
    a dry run reports exactly what the import then does.
    """
    if candidate.suppress:
        return _plan_suppression(subscriber, members)
    if subscriber is None:
        return "added"
    membership = members.get(subscriber.id or 0)
    if membership is not None and not states.allowed(membership.status, MembershipStatus.ACTIVE):
        return str(membership.status)
    if membership is None:
        return "added"
    changed = _differences(subscriber, candidate)
    return "updated" if changed or membership.status != MembershipStatus.ACTIVE else "unchanged"


def _apply(
    session: Session,
    group: Group,
    candidate: _Candidate,
    subscriber: Subscriber | None,
    members: dict[int, Membership],
    *,
    source: str,
    actor: str,
) -> str:
    """Bring one person's row in line with the candidate; say what happened."""
    if candidate.suppress:
        return _suppress(session, group, candidate, subscriber, members, source=source, actor=actor)
    if subscriber is None:
        subscriber = _new_subscriber(session, candidate)
        changed: list[str] = []
    else:
        membership = members.get(subscriber.id or 0)
        # An ended membership stays ended: only a new confirmed opt-in makes it active.
        if membership is not None and not states.allowed(membership.status, MembershipStatus.ACTIVE):
            return str(membership.status)
        changed = _member_changes(subscriber, candidate)
    assert subscriber.id is not None
    membership = members.get(subscriber.id)
    if membership is None:
        membership = Membership(
            subscriber_id=subscriber.id,
            group_id=group.id or 0,
            status=MembershipStatus.ACTIVE,
            source=source,
            consent_at=utcnow(),
        )
        session.add(membership)
        members[subscriber.id] = membership
        audit.record(
            session, "subscribe", actor=actor, source=source, subscriber_id=subscriber.id, group_id=group.id
        )
        return "added"
    if states.move(membership, MembershipStatus.ACTIVE):
        session.add(membership)
        changed.append("status")
    if not changed:
        return "unchanged"
    session.add(subscriber)
    audit.record(
        session,
        "update",
        actor=actor,
        source=source,
        subscriber_id=subscriber.id,
        group_id=group.id,
        fields=changed,
    )
    return "updated"


def _new_subscriber(session: Session, candidate: _Candidate) -> Subscriber:
    """The candidate's subscriber row, added and flushed (so it has an id)."""
    subscriber = Subscriber(
        email=candidate.address.email,
        email_key=candidate.address.key,
        name=candidate.name,
        language=candidate.language,
        field_values=candidate.fields or None,
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def _plan_suppression(subscriber: Subscriber | None, members: dict[int, Membership]) -> str:
    """What :func:`_suppress` would answer, changing nothing."""
    membership = None if subscriber is None else members.get(subscriber.id or 0)
    if membership is not None and membership.status.sticky:
        return str(membership.status)
    return "suppressed"


def _suppress(
    session: Session,
    group: Group,
    candidate: _Candidate,
    subscriber: Subscriber | None,
    members: dict[int, Membership],
    *,
    source: str,
    actor: str,
) -> str:
    """Record the candidate as unsubscribed from the group (a person the old system blocklisted).

    An unknown address gets a subscriber row and an ``unsubscribed`` membership, so
    that it is never sent to and no later import or ``add`` makes it a member; a
    pending or active member is unsubscribed; an ended membership stays as it is.
    """
    if subscriber is None:
        subscriber = _new_subscriber(session, candidate)
    assert subscriber.id is not None
    membership = members.get(subscriber.id)
    if membership is not None and membership.status.sticky:
        return str(membership.status)
    if membership is None:
        membership = Membership(
            subscriber_id=subscriber.id,
            group_id=group.id or 0,
            status=MembershipStatus.UNSUBSCRIBED,
            source=source,
        )
        members[subscriber.id] = membership
    else:
        states.move(membership, MembershipStatus.UNSUBSCRIBED)
    session.add(membership)
    audit.record(
        session, "unsubscribe", actor=actor, source=source, subscriber_id=subscriber.id, group_id=group.id
    )
    return "suppressed"


def add(
    session: Session,
    settings: Settings,
    group_slug: str,
    email: str,
    *,
    actor: str,
    name: str | None = None,
    language: str | None = None,
    fields: Mapping[str, str | None] | None = None,
    source: str = "cli",
) -> str:
    """Add one person to a group by hand; returns ``added``, ``updated`` or ``unchanged``.

    ``fields`` are custom field values (an empty one leaves the person's as it is); a
    value that does not fit its field is an InputError and nothing changes.
    """
    group = get_group(session, settings, group_slug)
    try:
        address = parse_address(email)
    except InvalidAddress as exc:
        raise InputError("'{email}' is not a usable address: {reason}", email=email, reason=exc.msg) from None
    if language:
        try:
            language = normalize_language(language)
        except ValueError as exc:
            raise InputError(reason(exc)) from None
    values, problems = clean_values(settings.fields, fields or {})
    if problems:
        raise InputError(problems[0])
    subscriber = _existing(session, [address.key]).get(address.key)
    members = _memberships(session, group)
    candidate = _Candidate(address, 0, clean_name(name) or clean_name(address.display_name), language, values)
    outcome = _apply(session, group, candidate, subscriber, members, source=source, actor=actor)
    if outcome not in {"added", "updated", "unchanged"}:
        raise TransitionError(
            "{email} is {status} from {group}; only a new confirmed opt-in can subscribe them again",
            email=address.email,
            status=MembershipStatus(outcome),
            group=group_slug,
        )
    return outcome


def find_subscriber(session: Session, email: str) -> Subscriber:
    try:
        key = parse_address(email).key
    except InvalidAddress:
        key = email_key(email.strip())
    subscriber = session.exec(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()
    if subscriber is None:
        raise NotFoundError("no subscriber '{email}'", email=email.strip())
    return subscriber


def remove(
    session: Session, settings: Settings, group_slug: str, email: str, *, actor: str, source: str = "cli"
) -> bool:
    """Unsubscribe a person from one group; False if they already were not active."""
    group = get_group(session, settings, group_slug)
    subscriber = find_subscriber(session, email)
    membership = _memberships(session, group).get(subscriber.id or 0)
    if membership is None:
        raise NotFoundError("{email} is not a member of {group}", email=subscriber.email, group=group_slug)
    if membership.status.sticky:
        return False
    states.move(membership, MembershipStatus.UNSUBSCRIBED)
    session.add(membership)
    audit.record(
        session, "unsubscribe", actor=actor, source=source, subscriber_id=subscriber.id, group_id=group.id
    )
    return True


def forget(session: Session, email: str, *, actor: str) -> dict[str, int]:
    """Erase a person everywhere; keep one audit line that says only that it happened."""
    subscriber = find_subscriber(session, email)
    sid = subscriber.id
    counts = {
        "memberships": _count_delete(session, Membership, col(Membership.subscriber_id) == sid),
        "deliveries": _count_delete(session, Delivery, col(Delivery.subscriber_id) == sid),
        "events": _count_delete(session, Event, col(Event.subscriber_id) == sid),
    }
    session.delete(subscriber)
    audit.record(session, "erase", actor=actor, source="cli", **counts)
    return counts


def _count_delete(session: Session, table: type, condition: ColumnElement[bool]) -> int:
    result = session.execute(delete(table).where(condition))
    return int(getattr(result, "rowcount", 0) or 0)
