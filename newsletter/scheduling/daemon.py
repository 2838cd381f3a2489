"""The long-running scheduler: APScheduler 3 cron jobs that each run one idempotent tick.

One cron job per schedule and group, in that group's time zone, with
``coalesce=True``, ``max_instances=1`` and a misfire grace in hours; a single worker
thread, so ticks never overlap; and a tick at start-up, which catches up a run
missed during downtime (once, if within the grace; otherwise it is reported). A
second daemon on the same database waits as a standby (see ``leader.py``). Every
:data:`CONFIRMATION_SECONDS` a job of its own (its own thread, so a long send does not
hold it up) sends the queued confirmation emails (``delivery/confirmations.py``).
Later stages add their own periodic work as :class:`Chore` jobs (the notifications
digests, ``operations/notifications.py``), each in a thread of its own.
SIGTERM and Ctrl-C let the batch in hand finish, then the daemon exits cleanly.

The site's sources and schedules may change while it runs (the workspace edits
``newsletter.toml`` and ``schedules/``): every :data:`WATCH_SECONDS` a job of its own
looks at those files (a ``stat`` each) and, when one changed, plans the cron jobs again;
each tick takes the sources the file declares then (``core/site.LiveSite``).
"""

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from newsletter.core.models import utcnow
from newsletter.core.site import FileKey, LiveSite, Site, file_key
from newsletter.delivery.transports import Transport
from newsletter.scheduling.leader import leadership
from newsletter.scheduling.scheduler import (
    TickReport,
    describe,
    run_due,
    send_confirmations,
    trigger,
    zone_of,
)
from newsletter.scheduling.schedules import SCHEDULES_DIR, load_schedules

log = logging.getLogger("newsletter.scheduling.daemon")
STANDBY_RETRY_SECONDS = 30.0
# How often the queued confirmation emails are looked at: a sign-up waits at most this long.
CONFIRMATION_SECONDS = 10.0
# How often the daemon looks for changed sources and schedules (a stat per file).
WATCH_SECONDS = 10.0
FilesKey = tuple[FileKey, tuple[tuple[str, FileKey], ...]]


@dataclass(frozen=True)
class Chore:
    """Periodic work of a later stage that the daemon runs every ``seconds``, given the time."""

    name: str
    seconds: float
    run: Callable[[datetime], None]


class Daemon:
    """The scheduler's main loop: lead (or stand by), tick at start-up, then on every job.

    ``now`` is the clock a tick reads when a job fires (tests pass a fixed moment);
    ``on_tick`` gets each tick's report and ``on_standby`` is called each time
    leadership is refused, before waiting ``standby_seconds`` to ask again.
    """

    def __init__(
        self,
        site: Site,
        transport_factory: Callable[[], Transport],
        on_tick: Callable[[TickReport], None] | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
        standby_seconds: float = STANDBY_RETRY_SECONDS,
        on_standby: Callable[[], None] | None = None,
        confirmation_seconds: float = CONFIRMATION_SECONDS,
        chores: Sequence[Chore] = (),
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        self.site = site
        # The sources follow newsletter.toml; the jobs follow the files (see watch).
        self.live = LiveSite(site)
        self.watch_seconds = watch_seconds
        self._planned: set[str] = set()
        self._files: FilesKey | None = None
        self.transport_factory = transport_factory
        self.stop = threading.Event()
        self.on_tick = on_tick or (lambda report: log.info(describe(report)))
        self.now = now
        self.standby_seconds = standby_seconds
        self.on_standby = on_standby or (lambda: None)
        self.confirmation_seconds = confirmation_seconds
        self.chores = tuple(chores)

    def tick(self, at: datetime | None = None) -> None:
        if self.stop.is_set():
            return
        try:
            report = run_due(
                self.live.current(), at or self.now(), self.transport_factory, should_stop=self.stop.is_set
            )
        except Exception:  # a failing tick is logged; the daemon keeps its schedule
            log.exception("tick failed")
            return
        self.on_tick(report)

    def send_confirmations(self) -> None:
        if self.stop.is_set():
            return
        report = TickReport(self.now())
        try:
            send_confirmations(self.site, self.transport_factory, report)
        except Exception:  # a failing round is logged; the next one tries again
            log.exception("sending confirmation emails failed")
            return
        for line in report.confirmations:
            log.info(line)

    def chore(self, chore: Chore) -> None:
        if self.stop.is_set():
            return
        try:
            chore.run(self.now())
        except Exception:  # a failing round is logged; the next one tries again
            log.exception("%s failed", chore.name)

    def _scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(1),
                "confirmations": ThreadPoolExecutor(1),
                "chores": ThreadPoolExecutor(1),
                "watch": ThreadPoolExecutor(1),
            },
            timezone="UTC",
        )
        scheduler.add_job(
            self.send_confirmations,
            IntervalTrigger(seconds=self.confirmation_seconds),
            id="confirmations",
            executor="confirmations",
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        for chore in self.chores:
            scheduler.add_job(
                self.chore,
                IntervalTrigger(seconds=chore.seconds),
                args=[chore],
                id=f"chore:{chore.name}",
                executor="chores",
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
        scheduler.add_job(
            self.watch,
            IntervalTrigger(seconds=self.watch_seconds),
            args=[scheduler],
            id="watch",
            executor="watch",
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        self._files = self._files_key()
        self.plan(scheduler)
        return scheduler

    def plan(self, scheduler: BackgroundScheduler) -> list[str]:
        """Add the jobs the schedules and sources ask for now, replacing those planned before.

        One cron job per schedule and group in its zone, and one interval job for the
        sources (the shortest ``interval_minutes``); the ids of the jobs planned.
        """
        settings = self.live.current().settings
        for job_id in self._planned:
            if scheduler.get_job(job_id) is not None:
                scheduler.remove_job(job_id)
        self._planned = set()
        schedules, _ = load_schedules(settings.site_dir, settings.groups)
        for schedule in schedules:
            for group in schedule.groups:
                if group not in settings.groups:
                    continue
                job_id = f"{schedule.name}:{group}"
                scheduler.add_job(
                    self.tick,
                    trigger(schedule, zone_of(schedule, settings, group)),
                    id=job_id,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=int(schedule.grace_hours * 3600),
                    replace_existing=True,
                )
                self._planned.add(job_id)
        if settings.sources:
            minutes = min(s.interval_minutes for s in settings.sources)
            scheduler.add_job(
                self.tick,
                IntervalTrigger(minutes=minutes),
                id="collect",
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
            self._planned.add("collect")
        return sorted(self._planned)

    def watch(self, scheduler: BackgroundScheduler) -> bool:
        """Plan the jobs again if ``newsletter.toml`` or a schedule file changed; True if it did."""
        if self.stop.is_set():
            return False
        try:
            key = self._files_key()
            if key == self._files:
                return False
            self._files = key
            log.info("the site's sources or schedules changed: planning the jobs again")
            for job_id in self.plan(scheduler):
                job = scheduler.get_job(job_id)
                log.info("job %s: next run %s", job_id, getattr(job, "next_run_time", None))
        except Exception:  # a failed look is logged; the jobs planned before stay
            log.exception("planning the jobs again failed")
            return False
        return True

    def _files_key(self) -> FilesKey:
        settings = self.site.settings
        folder = settings.site_dir / SCHEDULES_DIR
        schedules = tuple((path.name, file_key(path)) for path in sorted(folder.glob("*.toml")))
        return file_key(settings.config_file), schedules

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        log.info("stopping after the work in hand")
        self.stop.set()

    def run(self, *, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        while not self.stop.is_set():
            with leadership(self.site.engine) as leader:
                if not leader:
                    log.info("another daemon is the leader; standing by")
                    self.on_standby()
                    self.stop.wait(self.standby_seconds)
                    continue
                log.info("leader: scheduling")
                self.tick()
                scheduler = self._scheduler()
                scheduler.start()
                for job in scheduler.get_jobs():
                    log.info("job %s: next run %s", job.id, job.next_run_time)
                self.stop.wait()
                scheduler.shutdown(wait=True)
        log.info("stopped")
