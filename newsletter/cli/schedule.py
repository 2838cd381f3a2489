"""``newsletter collect``, ``run-due`` and ``daemon``: the scheduled side of the pipeline."""

import logging
from datetime import UTC, datetime

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, log_handler, table
from newsletter.core.errors import InputError, StateError
from newsletter.core.models import utcnow
from newsletter.core.site import LiveSite
from newsletter.delivery import webhooks
from newsletter.delivery.transports import open_transport
from newsletter.operations import notifications
from newsletter.scheduling.leader import leadership
from newsletter.scheduling.scheduler import describe
from newsletter.scheduling.scheduler import run_due as tick

pass_app = click.make_pass_decorator(AppContext)
# How often the daemon looks for notifications to record and digests to send.
NOTIFY_SECONDS = 60.0
# How often the daemon dispatches captured events and posts the due webhooks.
WEBHOOK_SECONDS = 10.0


@click.command()
@click.option("--source", "names", multiple=True, help="Only this source (repeatable). Default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def collect(app: AppContext, /, names: tuple[str, ...], as_json: bool) -> None:
    """Fetch every feed source now and add its new entries to the item pool.

    A source that fails is reported (and shown by `newsletter status`); the others
    are collected all the same. Exit status 1 if any source failed.

    \b
    Example:
      newsletter collect
      newsletter collect --source wipo-news --json
    """
    unknown = set(names) - {s.name for s in app.settings.sources}
    if unknown:
        known = ", ".join(sorted(s.name for s in app.settings.sources)) or "none"
        raise InputError(
            f"no source named {', '.join(sorted(unknown))} in {app.settings.config_file} (known: {known})"
        )
    # Here, not at the top: `run-due`, in this module too, loads the fetchers only when a
    # source is due (collecting/sources.py).
    from newsletter.collecting.collect import collect as collect_sources

    reports = collect_sources(app.site, names=names)
    if as_json:
        emit_json(reports)
    else:
        table(
            ["source", "added", "seen", "merged", "updated", "too old", "result"],
            [
                (
                    r.name,
                    r.added,
                    r.seen,
                    r.merged,
                    r.updated,
                    r.too_old,
                    r.error or ("not modified" if r.not_modified else _ok(r.warning)),
                )
                for r in reports
            ],
        )
    failed = [r for r in reports if r.error]
    if failed:
        raise click.exceptions.Exit(1)


def _ok(warning: str | None) -> str:
    return f"ok ({warning})" if warning else "ok"


def _moment(value: str | None) -> datetime:
    if value is None:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--at {value!r} is not an ISO 8601 time such as 2026-11-30T09:00+01:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


@click.command("run-due")
@click.option(
    "--at", "at", metavar="ISO-8601", help="Act as if it were this moment (default: now; no offset = UTC)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def run_due(app: AppContext, /, at: str | None, as_json: bool) -> None:
    """Do one scheduler tick: collect what is due, build what is due, send what is approved.

    Then record the workspace's notifications and send the digests that are due, and
    post the webhooks that are due.

    Running it again for the same moment does nothing. Use it from cron instead of
    the daemon, or to replay a moment in tests.

    \b
    Example:
      newsletter run-due --at 2026-11-30T09:00:00+01:00
    """
    moment = _moment(at)
    settings = app.settings
    with leadership(app.site.engine) as leader:
        if not leader:
            raise InputError("a newsletter daemon is running on this database; it does the scheduled work")
        report = tick(app.site, moment, lambda: open_transport(settings))
        notified = notifications.run(app.site, lambda: open_transport(settings), moment)
        posted = webhooks.run(app.site)
    report.errors.extend(notified.errors)
    if as_json:
        emit_json(report)
    else:
        echo(describe(report, separator="\n  "))
        for line in [*notified.lines(), *posted.lines()]:
            echo(f"  {line}")
        done = (
            notified.sent
            or notified.noticed
            or posted.lines()
            or report.built
            or report.sent
            or report.missed
            or report.confirmations
            or any(r.added for r in report.collected)
        )
        if not (done or report.errors):
            echo("nothing was due")
    if report.errors:
        # A non-zero exit, so that cron (or whatever runs this) tells someone.
        raise StateError(
            f"{len(report.errors)} problem(s) in this tick, listed above; the rest was done "
            "(a failed slot is tried again at the next tick)"
        )


@click.command()
@click.option("-v", "--verbose", is_flag=True, help="Log each job's details.")
@pass_app
def daemon(app: AppContext, /, verbose: bool) -> None:
    """Run the scheduler until stopped (SIGTERM or Ctrl-C finish the work in hand first).

    One cron job per schedule and group in the group's time zone. A second daemon on
    the same database stands by and takes over when the first stops.

    \b
    Example:
      newsletter --transport smtp daemon
      newsletter daemon --verbose
    """
    from newsletter.scheduling.daemon import Chore, Daemon

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[log_handler()])
    if not verbose:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = app.site.settings
    site = app.site
    # The notices about failing sources follow the sources the workspace edits.
    live = LiveSite(site)

    def notify(now: datetime) -> None:
        notifications.run(live.current(), lambda: open_transport(settings), now)

    def post_webhooks(now: datetime) -> None:
        for line in webhooks.run(site).lines():
            logging.getLogger("newsletter.webhooks").info(line)

    # Always, webhooks or not: the events captured meanwhile are dispatched (and, when no
    # endpoint wants them, deleted), so the capture table does not grow.
    chores = [
        Chore("notifications", NOTIFY_SECONDS, notify),
        Chore("webhooks", WEBHOOK_SECONDS, post_webhooks),
    ]
    Daemon(site, lambda: open_transport(settings), chores=chores).run()
