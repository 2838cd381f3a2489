"""Acting on reports: scoring bounces, ending memberships, counting complaints per edition.

Which reports are believed: with ``[delivery] bounce_address`` set, only one that came
back to the member's own signed VERP address (``core/verp.py``). Anyone can send a
failure notice or a feedback report naming an address to the bounce mailbox, so one
without a genuine VERP address is recorded (``bounce-unverified`` or
``complaint-unverified``) and changes nothing; an unverified bounce asks for a probe
(a :class:`~newsletter.core.models.Probe`, sent by ``delivery/probes.py``), and only
the probe's own bounce ends the membership, as GNU Mailman does. A site that leaves
``bounce_address`` unset keeps believing the address and the List-Id too.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.audience import selfservice
from newsletter.audience.addresses import email_key, parse_address
from newsletter.core import audit, states
from newsletter.core.errors import BadToken, InvalidAddress, NotFoundError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Event,
    Group,
    Membership,
    MembershipStatus,
    Probe,
    Subscriber,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer, issued_at
from newsletter.feedback import policy, reading
from newsletter.feedback.classify import Failure, Report, Verdict, classify
from newsletter.feedback.policy import LIVE
from newsletter.feedback.reading import Incoming, unreadable

# The audit kinds a report writes; a report already behind one of them is not applied twice.
KINDS = ("bounce", "complaint", "bounce-unverified", "complaint-unverified", "unsubscribe-refused")


@dataclass
class Outcome:
    source: str
    verdict: str
    recipients: list[str]
    action: str
    message_id: str | None = None


@dataclass
class Unreadable:
    """A message that could not be read; ``moved_to`` once it is quarantined."""

    source: str
    reason: str
    maildir: str | None = None
    key: str | None = None
    moved_to: str | None = None


@dataclass
class ProcessReport:
    outcomes: list[Outcome] = field(default_factory=list)
    changed: int = 0
    dry_run: bool = False
    # Reports not believed (no genuine VERP address), and the probes they asked for.
    unverified: int = 0
    probes_wanted: int = 0
    unsubscribed: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)

    def summary(self) -> str:
        counts = {v: sum(o.verdict == v for o in self.outcomes) for v in Verdict}
        line = (
            f"{len(self.outcomes)} message(s): {counts[Verdict.HARD]} hard, {counts[Verdict.SOFT]} soft, "
            f"{counts[Verdict.COMPLAINT]} complaint(s), {counts[Verdict.NONE]} not a bounce; "
            f"{self.changed} membership(s) ended"
        )
        extra = [
            f"{count} {words}"
            for count, words in [
                (self.unverified, "unverified (not applied)"),
                (self.probes_wanted, "probe(s) to send"),
                (counts[Verdict.UNSUBSCRIBE], "unsubscribe request(s)"),
                (self.unsubscribed, "unsubscribed by mail"),
                (len(self.unreadable), "unreadable"),
            ]
            if count
        ]
        return "; ".join([line, *extra])


# Reading -----------------------------------------------------------------------------


class _Run:
    """One processing run: the session, the settings and the moment, plus lookups."""

    def __init__(self, session: Session, settings: Settings, actor: str, at: datetime) -> None:
        self.session, self.settings, self.actor, self.at = session, settings, actor, at
        self.slugs = {g.id: g.slug for g in session.exec(select(Group))}
        self.changed = 0
        # Believe only reports that came back to a genuine VERP address (see the module
        # docstring) once a bounce address is configured, the site's or any group's.
        self.verified_only = settings.delivery.bounce_address is not None or any(
            group.bounce_address for group in settings.groups.values()
        )
        self.report = ProcessReport()

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

    def seen(self, subscriber_id: int | None, message_id: str | None) -> bool:
        if not message_id:
            return False
        query = select(Event.detail).where(
            col(Event.subscriber_id) == subscriber_id
            if subscriber_id is not None
            else col(Event.subscriber_id).is_(None),
            col(Event.kind).in_(KINDS),
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
    """Classify every message and apply it; the caller's transaction makes it all-or-nothing.

    A message that cannot be read is reported in ``unreadable`` (the caller may
    quarantine it with :func:`~newsletter.feedback.reading.quarantine`); the others
    are processed all the same.
    """
    run = _Run(session, settings, actor, at or utcnow())
    report = run.report
    for incoming in messages:
        problem = unreadable(incoming.data)
        found = None
        if problem is None:
            try:
                found = classify(incoming.data, settings)
            except Exception as exc:
                # Parsing hostile input is read-only (no database work happens in classify):
                # whatever it raises makes this one message unreadable, never the run.
                problem = f"cannot be parsed ({type(exc).__name__})"
        if found is None:
            reason = problem or "cannot be parsed"
            report.unreadable.append(Unreadable(incoming.label, reason, incoming.maildir, incoming.key))
            report.outcomes.append(
                Outcome(incoming.label, str(Verdict.UNREADABLE), [], f"nothing ({reason})")
            )
            continue
        if found.verdict == Verdict.COMPLAINT:
            recipients, action = _complaint(run, found)
        elif found.verdict == Verdict.UNSUBSCRIBE:
            recipients, action = _unsubscribe(run, found)
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
    if run.verified_only and not report.verp_in_header:
        # A notice comes back to the VERP address: one that only quotes it (a returned
        # copy's Return-Path, say) was sent to some other address, by anyone.
        report = replace(report, verp=None)
    if report.verp is not None and report.verp.probe_id is not None:
        return _probe_bounce(run, report, report.verp.probe_id)
    if report.verp is not None and report.verp.user_id is not None:
        # The workspace's own mail (a sign-in link, a digest): ours, but nobody's membership.
        return [f.address for f in report.failures], (
            f"nothing (workspace mail to user #{report.verp.user_id}, not a list's)"
        )
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
    if run.verified_only and report.verp is None:
        actions = [_unverified(run, report, "bounce", t[0], t[2], t[3], t[1]) for t in targets]
        return [t[0].email for t in targets], "; ".join(actions)
    actions = [_score(run, report, *target) for target in targets]
    return [t[0].email for t in targets], "; ".join(actions)


def _unverified(
    run: _Run,
    report: Report,
    kind: str,
    subscriber: Subscriber,
    group_id: int | None,
    edition_id: int | None,
    failure: Failure | None = None,
) -> str:
    """Record a report that did not come back to a genuine VERP address; a bounce asks for a probe."""
    assert subscriber.id is not None
    if run.seen(subscriber.id, report.message_id):
        return "already processed"
    live = [
        m
        for m in run.memberships(subscriber.id)
        if m.status in LIVE and (group_id is None or m.group_id == group_id)
    ]
    if not live:
        return "nothing (no active membership)"
    run.report.unverified += 1
    actions = []
    for membership in live:
        slug = run.slugs.get(membership.group_id, "?")
        # Only an active member is probed: a pending one never asked for mail beyond the
        # confirmation, and a forged bounce must not make us write to them again.
        probing = kind == "bounce" and membership.status == MembershipStatus.ACTIVE
        probe = _want_probe(run, membership, report.message_id) if probing else None
        detail: dict[str, Any] = {"message_id": report.message_id, "verdict": str(report.verdict)}
        if failure is not None:
            detail |= {"status": failure.status, "permanent": failure.permanent}
        if report.feedback_type:
            detail["feedback_type"] = report.feedback_type
        run.record(
            f"{kind}-unverified",
            membership,
            edition_id if membership.group_id == group_id else None,
            **detail,
            via="list-id" if group_id else "address",
            probe=probe,
        )
        if probe is None:
            actions.append(f"unverified, recorded, not applied in {slug}")
        elif probe == "open":
            actions.append(f"unverified; a probe is already out in {slug}")
        else:
            actions.append(f"unverified; probe wanted in {slug}")
    return ", ".join(actions)


def _want_probe(run: _Run, membership: Membership, message_id: str | None) -> str:
    """A new probe for the membership ("wanted"), unless one is still open ("open")."""
    query = select(Probe).where(
        Probe.subscriber_id == membership.subscriber_id,
        Probe.group_id == membership.group_id,
        col(Probe.bounced_at).is_(None),
        col(Probe.expires_at) > run.at,
    )
    if run.session.exec(query).first() is not None:
        return "open"
    days = run.settings.bounces.probe_days
    run.session.add(
        Probe(
            subscriber_id=membership.subscriber_id,
            group_id=membership.group_id,
            reason=message_id,
            created_at=run.at,
            expires_at=run.at + timedelta(days=days),
        )
    )
    run.report.probes_wanted += 1
    return "wanted"


def _probe_bounce(run: _Run, report: Report, probe_id: int) -> tuple[list[str], str]:
    """A notice to a probe's own address: the address failed, so the probed membership ends."""
    probe = run.session.get(Probe, probe_id)
    subscriber = run.session.get(Subscriber, probe.subscriber_id) if probe is not None else None
    shown = [f.address for f in report.failures]
    if (
        probe is None
        or subscriber is None
        or probe.subscriber_id != (report.verp and report.verp.subscriber_id)
    ):
        return shown, "nothing (the probe address names no probe of ours)"
    slug = run.slugs.get(probe.group_id, "?")
    if probe.bounced_at is not None:
        return [subscriber.email], "already processed"
    failure = _for_subscriber(report.failures, subscriber.email)
    if not failure.permanent:
        return [subscriber.email], f"nothing (the probe is delayed, still trying, in {slug})"
    if run.at > probe.expires_at:
        return [subscriber.email], f"nothing (the probe expired on {probe.expires_at:%Y-%m-%d})"
    probe.bounced_at = run.at
    run.session.add(probe)
    membership = next((m for m in run.memberships(probe.subscriber_id) if m.group_id == probe.group_id), None)
    if membership is None or membership.status not in LIVE:
        return [subscriber.email], f"nothing (no active membership in {slug})"
    run.end(membership, MembershipStatus.BOUNCED)
    run.record(
        "bounce",
        membership,
        None,
        message_id=report.message_id,
        verdict=str(report.verdict),
        status=failure.status,
        permanent=failure.permanent,
        outcome="bounced",
        via="probe",
        probe_id=probe.id,
    )
    return [subscriber.email], f"bounced in {slug} (the probe bounced)"


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
    if report.verp is not None and report.verp.probe_id is not None:
        probe = run.session.get(Probe, report.verp.probe_id)
        if probe is not None and probe.subscriber_id == report.verp.subscriber_id:
            subscriber = run.session.get(Subscriber, probe.subscriber_id)
            group_id = probe.group_id
    elif report.verp is not None:
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
    if run.verified_only and report.verp is None:
        return [subscriber.email], _unverified(
            run, report, "complaint", subscriber, group_id, edition.id if edition else None
        )
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


def _unsubscribe(run: _Run, report: Report) -> tuple[list[str], str]:
    """A mail to the List-Unsubscribe mailto: its signed token ends that membership, as one click does."""
    refused = None
    if not report.token:
        refused = "no unsubscribe token in the subject"
    else:
        try:
            data = Signer(run.settings.signing_key).read("unsubscribe", report.token)
            named = run.session.get(Subscriber, data.subscriber_id)
            if named is not None:
                # As on the web: a token older than its subscriber was made for someone erased since.
                selfservice.refuse_stale(named, issued_at(report.token))
            left = selfservice.unsubscribe(run.session, data, everything=False, source="mail")
        except BadToken:
            refused = "the unsubscribe token is forged or broken"
        except NotFoundError:
            refused = "the unsubscribe token names no subscription"
    if refused is not None:
        if not run.seen(None, report.message_id):
            event = audit.record(
                run.session,
                "unsubscribe-refused",
                actor=run.actor,
                source="mail",
                message_id=report.message_id,
                reason=refused,
            )
            event.at = run.at
        return [], f"nothing ({refused}; recorded)"
    shown = [named.email] if named else []
    if not left:
        return shown, "nothing (already unsubscribed)"
    run.report.unsubscribed += len(left)
    run.changed += len(left)
    return shown, "unsubscribed from " + ", ".join(left)


def quarantine(report: ProcessReport) -> None:
    """Move each unreadable message of a Maildir to its ``.quarantine`` folder (after the commit).

    A message read from a file or an mbox stays where it is; it is only reported.
    """
    for item in report.unreadable:
        if item.maildir and item.key and item.moved_to is None:
            item.moved_to = reading.quarantine(item.maildir, item.key)


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
