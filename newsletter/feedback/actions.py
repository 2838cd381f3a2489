"""Acting on reports: scoring bounces, ending memberships, counting complaints per edition."""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.audience.addresses import email_key, parse_address
from newsletter.core import audit, states
from newsletter.core.errors import InvalidAddress
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Event,
    Group,
    Membership,
    MembershipStatus,
    Subscriber,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.feedback import policy
from newsletter.feedback.classify import Failure, Report, Verdict, classify
from newsletter.feedback.policy import LIVE
from newsletter.feedback.reading import Incoming


@dataclass
class Outcome:
    source: str
    verdict: str
    recipients: list[str]
    action: str
    message_id: str | None = None


@dataclass
class ProcessReport:
    outcomes: list[Outcome] = field(default_factory=list)
    changed: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        counts = {v: sum(o.verdict == v for o in self.outcomes) for v in Verdict}
        return (
            f"{len(self.outcomes)} message(s): {counts[Verdict.HARD]} hard, {counts[Verdict.SOFT]} soft, "
            f"{counts[Verdict.COMPLAINT]} complaint(s), {counts[Verdict.NONE]} not a bounce; "
            f"{self.changed} membership(s) ended"
        )


# Reading -----------------------------------------------------------------------------


class _Run:
    """One processing run: the session, the settings and the moment, plus lookups."""

    def __init__(self, session: Session, settings: Settings, actor: str, at: datetime) -> None:
        self.session, self.settings, self.actor, self.at = session, settings, actor, at
        self.slugs = {g.id: g.slug for g in session.exec(select(Group))}
        self.changed = 0

    def group_id(self, slug: str | None) -> int | None:
        return next((gid for gid, s in self.slugs.items() if s == slug), None) if slug else None

    def subscriber(self, address: str) -> Subscriber | None:
        try:
            key = parse_address(address).key
        except InvalidAddress:
            key = email_key(address.strip())
        return self.session.exec(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()

    def memberships(self, subscriber_id: int) -> list[Membership]:
        query = select(Membership).where(Membership.subscriber_id == subscriber_id)
        return list(self.session.exec(query.order_by(col(Membership.group_id))))

    def edition(self, edition_id: int | None) -> Edition | None:
        return self.session.get(Edition, edition_id) if edition_id else None

    def seen(self, subscriber_id: int, message_id: str | None) -> bool:
        if not message_id:
            return False
        query = select(Event.detail).where(
            Event.subscriber_id == subscriber_id, col(Event.kind).in_(["bounce", "complaint"])
        )
        return any(json.loads(detail).get("message_id") == message_id for detail in self.session.exec(query))

    def record(self, kind: str, membership: Membership, edition_id: int | None, **detail: Any) -> None:
        event = audit.record(
            self.session,
            kind,
            actor=self.actor,
            source="mail",
            subscriber_id=membership.subscriber_id,
            group_id=membership.group_id,
            edition_id=edition_id,
            **detail,
        )
        event.at = self.at

    def end(self, membership: Membership, status: MembershipStatus) -> None:
        states.move(membership, status, at=self.at)
        self.session.add(membership)
        self.changed += 1


def process(
    session: Session,
    settings: Settings,
    messages: Iterable[Incoming],
    *,
    actor: str,
    at: datetime | None = None,
) -> ProcessReport:
    """Classify every message and apply it; the caller's transaction makes it all-or-nothing."""
    run = _Run(session, settings, actor, at or utcnow())
    report = ProcessReport()
    for incoming in messages:
        found = classify(incoming.data, settings)
        if found.verdict == Verdict.COMPLAINT:
            recipients, action = _complaint(run, found)
        elif found.verdict == Verdict.NONE:
            recipients, action = [], f"nothing ({found.kind})"
        else:
            recipients, action = _bounce(run, found)
        report.outcomes.append(
            Outcome(incoming.label, str(found.verdict), recipients, action, found.message_id)
        )
    report.changed = run.changed
    return report


def _bounce(run: _Run, report: Report) -> tuple[list[str], str]:
    targets: list[tuple[Subscriber, Failure, int | None, int | None]] = []
    if report.verp is not None:
        subscriber = run.session.get(Subscriber, report.verp.subscriber_id)
        edition = run.edition(report.verp.edition_id)
        if subscriber is None:
            return [f.address for f in report.failures], "nothing (the VERP address names no subscriber)"
        failure = _for_subscriber(report.failures, subscriber.email)
        group_id = edition.group_id if edition else None
        targets.append((subscriber, failure, group_id, edition.id if edition else None))
    else:
        edition = run.edition(report.edition_id)
        for failure in report.failures:
            subscriber = run.subscriber(failure.address)
            if subscriber is not None:
                group_id = run.group_id(report.group_slug)
                edition_id = edition.id if edition and edition.group_id == group_id else None
                targets.append((subscriber, failure, group_id, edition_id))
    if not targets:
        return [f.address for f in report.failures], "nothing (no subscriber with that address)"
    actions = [_score(run, report, *target) for target in targets]
    return [t[0].email for t in targets], "; ".join(actions)


def _for_subscriber(failures: tuple[Failure, ...], email: str) -> Failure:
    """The failure about this subscriber: theirs by address, else the only one, else the mildest."""
    mine = [f for f in failures if f.address.casefold() == email.casefold()]
    if mine or len(failures) == 1:
        return (mine or list(failures))[0]
    return next((f for f in failures if not f.hard), failures[0])


def _score(
    run: _Run,
    report: Report,
    subscriber: Subscriber,
    failure: Failure,
    group_id: int | None,
    edition_id: int | None,
) -> str:
    assert subscriber.id is not None
    if run.seen(subscriber.id, report.message_id):
        return "already processed"
    bounce = policy.Bounce(
        subscriber.id,
        failure.permanent,
        failure.status,
        via="verp" if report.verp else ("list-id" if group_id else "address"),
        group_id=group_id,
        edition_id=edition_id,
        message_id=report.message_id,
    )
    config = run.settings.bounces
    applied = policy.apply(run.session, config, bounce, actor=run.actor, source="mail", at=run.at)
    run.changed += applied.ended
    if not applied.memberships:
        return "nothing (no active membership)"
    if applied.final:
        return "bounced in " + ", ".join(run.slugs.get(m.group_id, "?") for m in applied.memberships)
    return ", ".join(
        f"bounced in {run.slugs.get(m.group_id, '?')}"
        if m.outcome == "bounced"
        else f"score {m.score:g}/{config.threshold:g} in {run.slugs.get(m.group_id, '?')}"
        for m in applied.memberships
    )


def _complaint(run: _Run, report: Report) -> tuple[list[str], str]:
    subscriber: Subscriber | None = None
    group_id: int | None = None
    edition: Edition | None = None
    if report.verp is not None:
        subscriber = run.session.get(Subscriber, report.verp.subscriber_id)
        edition = run.edition(report.verp.edition_id)
        group_id = edition.group_id if edition else None
    elif report.recipient and report.group_slug:
        subscriber = run.subscriber(report.recipient)
        group_id = run.group_id(report.group_slug)
        edition = run.edition(report.edition_id)
        if edition is not None and edition.group_id != group_id:
            edition = None
    shown = [report.recipient] if report.recipient else []
    if subscriber is None or group_id is None:
        return shown, "nothing (the report names no member of ours)"
    assert subscriber.id is not None
    membership = next((m for m in run.memberships(subscriber.id) if m.group_id == group_id), None)
    slug = run.slugs.get(group_id, "?")
    if membership is None:
        return [subscriber.email], f"nothing (not a member of {slug})"
    if run.seen(subscriber.id, report.message_id):
        return [subscriber.email], "already processed"
    before = membership.status
    if before in LIVE:
        run.end(membership, MembershipStatus.COMPLAINED)
    run.record(
        "complaint",
        membership,
        edition.id if edition else None,
        message_id=report.message_id,
        verdict="complaint",
        feedback_type=report.feedback_type,
        outcome="complained" if before in LIVE else f"already {before}",
        via="verp" if report.verp else "list-id",
    )
    action = f"complained in {slug}" if before in LIVE else f"complaint counted ({before} in {slug})"
    return [subscriber.email], action


# Reporting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EditionFeedback:
    edition_id: int
    group: str
    subject: str
    sent: int
    bounces: int
    complaints: int

    @property
    def complaint_rate(self) -> float | None:
        return self.complaints / self.sent if self.sent else None


def per_edition(session: Session) -> list[EditionFeedback]:
    """Bounce and complaint events counted per edition, newest edition first."""
    query = (
        select(Event.edition_id, Event.kind, func.count())
        .where(col(Event.kind).in_(["bounce", "complaint"]), col(Event.edition_id).is_not(None))
        .group_by(col(Event.edition_id), col(Event.kind))
    )
    counts: dict[int, dict[str, int]] = {}
    for edition_id, kind, count in session.exec(query):
        counts.setdefault(int(edition_id or 0), {})[kind] = int(count)
    sent_query = (
        select(Delivery.edition_id, func.count())
        .where(col(Delivery.edition_id).in_(list(counts)), col(Delivery.status) == DeliveryStatus.SENT)
        .group_by(col(Delivery.edition_id))
    )
    sent = {int(edition_id): int(count) for edition_id, count in session.exec(sent_query)}
    rows = []
    for edition_id in sorted(counts, reverse=True):
        edition = session.get(Edition, edition_id)
        group = session.get(Group, edition.group_id) if edition else None
        rows.append(
            EditionFeedback(
                edition_id,
                group.slug if group else "?",
                edition.subject if edition else "",
                sent.get(edition_id, 0),
                counts[edition_id].get("bounce", 0),
                counts[edition_id].get("complaint", 0),
            )
        )
    return rows
