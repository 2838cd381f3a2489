"""Probes: a short VERP-signed message to an address that an unverified bounce named.

A failure notice that did not come back to the member's own signed VERP address may
be forged, so ``feedback`` does not believe it: it asks for a probe (a
:class:`~newsletter.core.models.Probe` row without ``sent_at``). This sends them, one
message per probe under the list's own headers (``notice.py``, as the confirmation
email), from the probe's own envelope sender ``news-bounces+pID.sSUB.SIG@...``.
Only a bounce to that address ends the membership (GNU Mailman's bounce probes).

Each probe is claimed before it is sent (``sent_at`` set where it was empty), so a
daemon and ``bounces process`` running together send it once. A relay that refuses
the recipient outright (5xx) goes through the bounce policy, as any refusal at send
time does (``feedback/policy.py``). A temporary failure puts the probe back for the
next run, until it expires.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from newsletter.core import verp
from newsletter.core.errors import DeliveryError, NewsletterError
from newsletter.core.i18n import reader_language, translations
from newsletter.core.models import Group, Membership, MembershipStatus, Probe, Subscriber, utcnow
from newsletter.core.settings import Settings
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery.headers import ListHeaders
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.notice import notice_message
from newsletter.delivery.pending import probes_wanted
from newsletter.delivery.transports import Transport
from newsletter.feedback import policy


@dataclass
class ProbeReport:
    sent: int = 0
    refused: int = 0  # the relay refused the address (5xx): judged by the bounce policy
    deferred: list[str] = field(default_factory=list)  # temporary failures, tried again next run
    error: str | None = None  # no transport could be made: nothing was sent

    def summary(self) -> str:
        line = f"probes: {self.sent} sent"
        if self.refused:
            line += f", {self.refused} refused by the relay"
        if self.deferred:
            line += f", {len(self.deferred)} deferred ({'; '.join(self.deferred)})"
        if self.error:
            line += f"; {self.error}"
        return line


def probe_message(
    settings: Settings, signer: Signer, probe: Probe, subscriber: Subscriber, group: Group
) -> OutgoingMessage:
    """The probe's email: a few lines that ask nothing, sent from the probe's own VERP address."""
    assert probe.id is not None
    assert subscriber.id is not None
    assert group.id is not None
    language = reader_language(subscriber.language, settings.group(group.slug).language)
    gettext = translations(language).gettext
    subject = gettext("Checking your address for %(group)s") % {"group": group.name}
    headers = ListHeaders(
        settings,
        signer,
        edition_id=0,
        group_id=group.id,
        group_slug=group.slug,
        group_name=group.name,
        campaign="probe",
    )
    token, unsubscribe_url, _ = headers.links(subscriber.id)
    body = "\n\n".join(
        [
            gettext(
                "Some of our mail to this address came back. This message checks that it still "
                "reaches you; you need not do anything."
            ),
            gettext("To stop receiving %(group)s, open this link:") % {"group": group.name}
            + "\n"
            + unsubscribe_url,
            f"{headers.identity.organisation}\n{headers.identity.postal_address}",
        ]
    )
    return notice_message(
        settings,
        headers,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        language=language,
        subject=subject,
        body=body,
        unsubscribe_token=token,
        sender=verp.envelope_senders(settings, "probe", probe.id, group_slug=group.slug)(subscriber.id),
    )


def send_probes(
    site: Site, transport_factory: Callable[[], Transport], *, actor: str, at: datetime | None = None
) -> ProbeReport:
    """Send every probe that is wanted and not expired; each is claimed, sent and recorded on its own.

    The transport is made only when there is a probe to send, so a run without one
    needs no relay. A transport that cannot be made (no relay configured) is the
    report's ``error``; the probes stay wanted for the next run.
    """
    settings = site.settings
    signer = Signer(settings.signing_key)
    report = ProbeReport()
    moment = at or utcnow()
    wanted = probes_wanted(site, moment)
    if not wanted:
        return report
    try:
        transport = transport_factory()
    except NewsletterError as exc:
        report.error = f"{len(wanted)} probe(s) not sent: {exc}"
        return report
    try:
        for probe_id in wanted:
            _send_one(site, settings, signer, transport, probe_id, report, actor=actor, at=moment)
    finally:
        transport.close()
    return report


def _send_one(
    site: Site,
    settings: Settings,
    signer: Signer,
    transport: Transport,
    probe_id: int,
    report: ProbeReport,
    *,
    actor: str,
    at: datetime,
) -> None:
    with site.transaction() as session:
        claimed = session.execute(
            update(Probe).where(col(Probe.id) == probe_id, col(Probe.sent_at).is_(None)).values(sent_at=at)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return  # another process sent it
        probe = session.get(Probe, probe_id)
        assert probe is not None
        subscriber = session.get(Subscriber, probe.subscriber_id)
        group = session.get(Group, probe.group_id)
        assert subscriber is not None
        assert group is not None
        membership = session.exec(
            select(Membership.status).where(
                col(Membership.subscriber_id) == probe.subscriber_id,
                col(Membership.group_id) == probe.group_id,
            )
        ).one_or_none()
        if membership != MembershipStatus.ACTIVE:
            # Left (or ended) since the probe was asked for: nobody to check any more.
            probe.sent_at, probe.expires_at = None, at
            session.add(probe)
            return
        message = probe_message(settings, signer, probe, subscriber, group)
    try:
        transport.send(message)
    except DeliveryError as exc:
        with site.transaction() as session:
            probe = session.get(Probe, probe_id)
            assert probe is not None
            probe.last_error = str(exc)
            if exc.permanent:
                probe.bounced_at = at
                _refused(session, settings, probe, exc, actor=actor, at=at)
                report.refused += 1
            else:
                probe.sent_at = None
                report.deferred.append(f"probe {probe_id}: {exc}")
            session.add(probe)
        return
    with site.transaction() as session:
        probe = session.get(Probe, probe_id)
        assert probe is not None
        probe.message_id = message.message_id
        session.add(probe)
    report.sent += 1


def _refused(
    session: Session, settings: Settings, probe: Probe, exc: DeliveryError, *, actor: str, at: datetime
) -> None:
    """The relay refused the probed address for good: the bounce policy judges it, as at send time."""
    bounce = policy.Bounce(
        probe.subscriber_id,
        permanent=True,
        status=policy.reply_status(exc.code, str(exc)),
        via="smtp",
        group_id=probe.group_id,
    )
    policy.apply(session, settings.bounces, bounce, actor=actor, source="smtp", at=at)
