"""Scheduling: which edition is due when, and one idempotent tick that does the work.

Each schedule fires per group in a time zone (the schedule's, else the group's). A
firing is identified by its *period key*, the local wall-clock time of the slot
(``2026-11-30T09:00``): the autumn DST day repeats 02:30 but not its key, and
``UNIQUE(group, schedule, period_key)`` on editions makes a second build impossible.
``run_due(at)`` does everything due at that moment: collect, build, approve (for
``approval = "auto"``), send, and send the bounce probes ``bounces process`` asked for
(``delivery/probes.py``). Running it again for the same moment does nothing.

Sending goes through the delivery runner (``delivery/runner.py``), whose per-edition lease
keeps anyone else (a second tick, an ``editions send``, a worker) from sending an
edition the tick is sending; a lock of its own (see ``leader.py``) lets one tick send
at a time. A stop request (the daemon's SIGTERM) is honoured between slots,
between batches and between editions; the batch in hand is finished and recorded first.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlmodel import Session, col, select

from newsletter.collecting.sources import SourceReport, collect_due
from newsletter.core import audit
from newsletter.core.errors import ConflictError, LeaseHeld, NewsletterError, NothingToBuild
from newsletter.core.models import Edition, Event, Group
from newsletter.core.settings import Settings
from newsletter.core.site import Site
from newsletter.delivery import lease, pending
from newsletter.scheduling.leader import leadership
from newsletter.scheduling.schedules import Schedule, load_schedules

if TYPE_CHECKING:
    from newsletter.delivery.transports import Transport
    from newsletter.editions.render import Renderer

ACTOR = "scheduler"
# How far back to look for the latest slot; longer than any sensible schedule period.
LOOKBACK = timedelta(days=62)
SEND_LOCK = "send"
StopCheck = Callable[[], bool]
# The edition renderer, made at the first slot or send that needs one.
RendererOnce = Callable[[], "Renderer"]
TransportFactory = Callable[[], "Transport"]


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Slot:
    schedule: Schedule
    group: str
    fire_time: datetime

    @property
    def period_key(self) -> str:
        return self.fire_time.strftime("%Y-%m-%dT%H:%M")

    @property
    def marker(self) -> str:
        return f"{self.schedule.name}:{self.group}:{self.period_key}"


def zone_of(schedule: Schedule, settings: Settings, group: str) -> ZoneInfo:
    return ZoneInfo(schedule.timezone or settings.group(group).timezone)


def trigger(schedule: Schedule, zone: ZoneInfo) -> CronTrigger:
    return CronTrigger.from_crontab(schedule.cron, timezone=zone)


def latest_slot(schedule: Schedule, group: str, zone: ZoneInfo, at: datetime) -> Slot | None:
    """The last firing at or before ``at`` (within the lookback), in the schedule's zone."""
    cron = trigger(schedule, zone)
    moment = cron.get_next_fire_time(None, at - LOOKBACK)
    last = None
    while moment is not None and moment <= at:
        last = moment
        # Step in UTC: local arithmetic drops the fold, so on the autumn DST night the
        # second 02:30 plus one second would be the *first* 02:30 again, for ever.
        after = moment.astimezone(UTC) + timedelta(seconds=1)
        moment = cron.get_next_fire_time(moment, after)
        if moment is not None and moment.astimezone(UTC) <= last.astimezone(UTC):
            break
    return Slot(schedule, group, last) if last is not None else None


def next_run(schedule: Schedule, group: str, settings: Settings, now: datetime) -> datetime | None:
    zone = zone_of(schedule, settings, group)
    result: datetime | None = trigger(schedule, zone).get_next_fire_time(None, now)
    return result


@dataclass
class TickReport:
    at: datetime
    collected: list[SourceReport] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False
    # What became of the queued confirmation emails (delivery/confirmations.py).
    confirmations: list[str] = field(default_factory=list)


def describe(report: TickReport, *, separator: str = " | ") -> str:
    """One line for the log (or, with ``separator="\n"``, one line per kind of work)."""
    parts = [f"tick {report.at.isoformat(timespec='seconds')}"]
    added = sum(r.added for r in report.collected)
    if added:
        parts.append(f"collected {added} new item(s)")
    for name in ("built", "skipped", "missed", "waiting", "sent", "confirmations", "errors"):
        values = getattr(report, name)
        if values:
            parts.append(f"{name}: {'; '.join(values)}")
    if report.stopped:
        parts.append("stopped early: the rest is left for the next tick")
    failing = [f"{r.name}: {r.error}" for r in report.collected if r.error]
    if failing:
        parts.append(f"source errors: {'; '.join(failing)}")
    return separator.join(parts)


def _handled(session: Session, group: Group, slot: Slot) -> bool:
    edition = session.exec(
        select(Edition.id).where(
            col(Edition.group_id) == group.id,
            col(Edition.schedule) == slot.schedule.name,
            col(Edition.period_key) == slot.period_key,
        )
    ).first()
    if edition is not None:
        return True
    event = session.exec(
        select(Event.id).where(
            col(Event.kind).in_(["schedule-skip", "schedule-missed"]), col(Event.source) == slot.marker
        )
    ).first()
    return event is not None


def _has_history(session: Session, group: Group, slot: Slot) -> bool:
    """Whether this schedule has run (or been looked at) for this group before."""
    edition = session.exec(
        select(Edition.id).where(
            col(Edition.group_id) == group.id, col(Edition.schedule) == slot.schedule.name
        )
    ).first()
    if edition is not None:
        return True
    prefix = f"{slot.schedule.name}:{slot.group}:"
    event = session.exec(
        select(Event.id).where(
            col(Event.kind).in_(["schedule-skip", "schedule-missed"]), col(Event.source).startswith(prefix)
        )
    ).first()
    return event is not None


def _build_slot(site: Site, renderer: RendererOnce, slot: Slot, at: datetime, report: TickReport) -> None:
    schedule = slot.schedule
    try:
        with site.transaction() as session:
            group = session.exec(select(Group).where(col(Group.slug) == slot.group)).one()
            if _handled(session, group, slot):
                return
            if at - slot.fire_time > timedelta(hours=schedule.grace_hours):
                # A slot from before this schedule ever ran (a new site, a new schedule)
                # was not missed: it is set aside quietly. Later ones are reported.
                first = not _has_history(session, group, slot)
                kind = "schedule-skip" if first else "schedule-missed"
                audit.record(session, kind, actor=ACTOR, source=slot.marker, group_id=group.id)
                if not first:
                    report.missed.append(slot.marker)
                return
            # Loaded here: most ticks find every slot handled and build nothing.
            from newsletter.editions import build as editions

            try:
                edition = editions.build(
                    session,
                    site.settings,
                    renderer(),
                    slot.group,
                    actor=ACTOR,
                    schedule=schedule.name,
                    period_key=slot.period_key,
                    subject_template=schedule.subject,
                    template=schedule.template,
                    allow_empty=not schedule.skip_if_empty,
                    now=at,
                )
            except NothingToBuild:
                audit.record(session, "schedule-skip", actor=ACTOR, source=slot.marker, group_id=group.id)
                report.skipped.append(slot.marker)
                return
            # A group with the four-eyes rule wants a person's approval, whatever the schedule says.
            if schedule.approval == "auto" and not site.settings.group(slot.group).require_second_person:
                editions.approve(session, site.settings, renderer(), edition.id or 0, actor=ACTOR)
            else:
                report.waiting.append(f"{slot.marker} (edition #{edition.id} waits for approval)")
            report.built.append(f"{slot.marker} -> edition #{edition.id}")
    except ConflictError:
        # Another scheduler built this period at the same moment: the unique key held.
        report.skipped.append(f"{slot.marker} (built by another process)")
    except NewsletterError as exc:
        # A template or group problem stops this slot only; it is tried again next tick.
        report.errors.append(f"{slot.marker}: {exc}")


def build_due(
    site: Site, renderer: RendererOnce, at: datetime, report: TickReport, should_stop: StopCheck = _never
) -> None:
    schedules, problems = load_schedules(site.settings.site_dir, site.settings.groups)
    report.errors.extend(str(p) for p in problems)
    for schedule in schedules:
        for group in schedule.groups:
            if should_stop():
                report.stopped = True
                return
            slot = latest_slot(schedule, group, zone_of(schedule, site.settings, group), at)
            if slot is not None:
                _build_slot(site, renderer, slot, at, report)


def send_due(
    site: Site,
    renderer: RendererOnce,
    transport_factory: TransportFactory,
    report: TickReport,
    should_stop: StopCheck = _never,
) -> None:
    """Send what is due (and resume editions left sending), one at a time, through the runner.

    Due: an approved edition a schedule built (the schedule is a standing order to send
    what it builds once approved), and any edition planned for a moment
    (``Edition.scheduled_at``, set by someone allowed to send) at the first tick at or
    after it. An approved edition built by hand without a planned moment waits for
    "send now": approving is not sending (``editions.approve`` and ``editions.send`` are
    separate permissions).

    The runner's per-edition lease is what keeps an edition from going out twice, against
    any other sender; an edition someone else is sending is left to it (noted as skipped).
    One tick sends at a time besides (the send lock): a tick that finds it taken leaves
    the work to the one holding it, or to the next tick, instead of sending other
    editions side by side with it.
    """
    with leadership(site.engine, name=SEND_LOCK) as mine:
        if not mine:
            report.skipped.append("sending (another process is sending)")
            return
        due = pending.editions_due(site, report.at)
        if not due:
            return
        # The runner (messages, the engine, DKIM) loads only when an edition is due.
        from newsletter.delivery.runner import Runner

        for edition_id in due:
            if should_stop():
                report.stopped = True
                return
            runner = Runner(site, renderer(), transport_factory(), actor=ACTOR, should_stop=should_stop)
            try:
                result = runner.send(edition_id)
            except LeaseHeld as held:
                report.skipped.append(f"edition #{edition_id} (being sent by {lease.describe(held.owner)})")
                continue
            except NewsletterError as exc:
                report.errors.append(f"edition #{edition_id}: {exc}")
                continue
            report.sent.append(
                f"edition #{edition_id}: {result.status}, sent {result.report.sent}, "
                f"failed {result.report.failed}, deferred {result.report.deferred}"
            )


def run_due(
    site: Site,
    at: datetime,
    transport_factory: TransportFactory,
    *,
    collect_sources: bool = True,
    should_stop: StopCheck | None = None,
) -> TickReport:
    """One tick as if it were ``at``: collect what is due, build what is due, send what is approved.

    ``should_stop`` is asked between slots and between editions; when it says yes the
    tick ends after the piece of work in hand (``report.stopped``). Each stage's
    modules load only when the tick has work for it: one with nothing due (cron's
    every minute) runs a few queries and loads no fetcher, renderer or sender.
    """
    stop = should_stop or _never
    report = TickReport(at)

    @functools.cache
    def renderer() -> "Renderer":
        from newsletter.editions.render import Renderer

        return Renderer(site.settings)

    if collect_sources:
        report.collected = collect_due(site, at, stop)
    build_due(site, renderer, at, report, stop)
    if not report.stopped:
        send_due(site, renderer, transport_factory, report, stop)
    if not report.stopped:
        send_probes(site, transport_factory, at, report)
    if not report.stopped:
        send_confirmations(site, transport_factory, report)
    return report


def send_probes(site: Site, transport_factory: TransportFactory, at: datetime, report: TickReport) -> None:
    """Send the bounce probes ``bounces process`` asked for (``delivery/probes.py``)."""
    if not pending.probes_wanted(site, at):
        return
    from newsletter.delivery import probes

    sent = probes.send_probes(site, transport_factory, actor=ACTOR, at=at)
    if sent.deferred or sent.error:
        report.errors.append(sent.summary())
    elif sent.sent or sent.refused:
        report.sent.append(sent.summary())


def send_confirmations(site: Site, transport_factory: TransportFactory, report: TickReport) -> None:
    """Send the queued confirmation emails that are due (on the clock: they wait for no slot)."""
    if not pending.confirmations_queued(site):
        return
    from newsletter.delivery import confirmations

    transport = transport_factory()
    try:
        drained = confirmations.drain(site, transport)
    finally:
        transport.close()
    if drained.busy:
        report.confirmations.append(str(drained))
    report.confirmations.extend(drained.errors)
