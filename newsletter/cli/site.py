"""Site-level commands: init, migrate, check, status.

Each command imports the library it calls when it runs, so ``init`` or ``check``
does not load what ``status`` needs (``newsletter --help`` loads none of them).
"""

from datetime import datetime
from pathlib import Path

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table

pass_app = click.make_pass_decorator(AppContext)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="My Newsletter", show_default=True, help="The site's name.")
@pass_app
def init(app: AppContext, /, directory: Path, name: str) -> None:
    """Create a new site folder in DIRECTORY, with its database, ready to run.

    The database is the one the new newsletter.toml names (a SQLite file in the
    folder), unless --database-url or NEWSLETTER_DATABASE_URL say otherwise.

    \b
    Example:
      newsletter init ~/cepiug-news --name "CEPIUG News"
      cd ~/cepiug-news && newsletter check
    """
    from newsletter.operations.newsite import init_site

    created = init_site(directory, name, env=app.env, overrides=app.overrides)
    echo(f"created site {created.settings.site.name!r} in {directory}")
    echo(str(created.migration))
    echo(f"next: cd {directory} && newsletter check")


@click.command()
@pass_app
def migrate(app: AppContext, /) -> None:
    """Bring the database's schema to the revision this version of newsletter needs.

    Run it after installing a new version, before starting workers, the daemon or
    the web pages again (they refuse a database that is behind). Back the database
    up first. Two migrate commands started together are safe: one waits for the
    other, then finds nothing left to do.

    \b
    Example:
      newsletter migrate
      newsletter --database-url postgresql+psycopg://news@db.example.org/news migrate
    """
    from newsletter.core.site import migrate_site

    echo(str(migrate_site(app.settings)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@pass_app
def check(app: AppContext, /, as_json: bool) -> None:
    """Validate the site: settings, schedules, templates, subscriber files and the SMTP relay.

    Every problem is printed as FILE:LINE: KEY: MESSAGE; the exit status is 1 if
    there is any. The settings are checked as the other commands resolve them:
    newsletter.toml, then NEWSLETTER_* variables, then --database-url and
    --transport. No database is opened.

    \b
    Example:
      newsletter check
      newsletter --transport smtp check --json
    """
    from newsletter.operations.check import check_site

    report = check_site(app.resolution)
    if as_json:
        emit_json(report.as_json())
    else:
        for problem in report.problems:
            echo(str(problem), err=True)
        for warning in report.warnings:
            echo(f"warning: {warning}", err=True)
        if report.ok:
            counts = report.checked
            echo(
                f"site OK: {counts['groups']} groups, {counts['schedules']} schedules, "
                f"{counts['templates']} templates"
            )
    if not report.ok:
        if not as_json:
            echo(f"{len(report.problems)} problem(s) found", err=True)
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show members, editions and items per group, each source's health and each schedule's next run.

    The latest sent editions come with their figures: delivered, deferred, failed,
    bounced (hard, soft), complained, and unsubscribed after the edition. No open or
    click tracking.

    \b
    Example:
      newsletter status
      newsletter status --json
    """
    from newsletter.operations.status import site_status

    with app.site.transaction() as session:
        report = site_status(session, app.settings)
    if as_json:
        emit_json(report)
        return
    echo(f"site: {report.site}\ndatabase: {report.database}")

    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "-"

    table(
        ["group", "language", "timezone", "members", "editions"],
        [(g.slug, g.language, g.timezone, counts(g.members), counts(g.editions)) for g in report.groups],
    )
    echo(f"items: {counts(report.items)}")
    echo(f"confirmation emails: {counts(report.confirmations)}")
    if report.sources:
        echo()
        table(
            ["source", "items", "last fetched", "result"],
            [
                (
                    s.name,
                    s.items,
                    s.last_fetched_at.strftime("%Y-%m-%d %H:%M UTC") if s.last_fetched_at else "never",
                    _health(s.last_error, s.failures, s.last_success_at),
                )
                for s in report.sources
            ],
        )
    if report.schedules:
        echo()
        table(
            ["schedule", "group", "cron", "timezone", "next run"],
            [
                (
                    s.schedule,
                    s.group,
                    s.cron,
                    s.timezone,
                    s.next_run.strftime("%Y-%m-%d %H:%M %Z") if s.next_run else "-",
                )
                for s in report.schedules
            ],
        )
    if report.editions:
        echo()
        table(
            [
                "edition",
                "group",
                "status",
                "delivered",
                "deferred",
                "failed",
                "bounced",
                "complained",
                "unsubscribed",
            ],
            [
                (
                    f"#{e.id}",
                    e.group,
                    e.status,
                    e.figures["delivered"]
                    or (f"0 ({e.figures['written']} written)" if e.figures["written"] else 0),
                    e.figures["deferred"],
                    e.figures["failed"],
                    f"{e.figures['bounced_hard']} hard, {e.figures['bounced_soft']} soft",
                    e.figures["complained"],
                    e.figures["unsubscribed"],
                )
                for e in report.editions
            ],
        )
    for problem in report.problems:
        echo(f"problem: {problem}", err=True)


def _health(error: str | None, failures: int, last_success: datetime | None) -> str:
    """A source's result for `status`: "ok", or its error with how long it has been failing."""
    if not error:
        return "ok"
    since = f", last ok {last_success:%Y-%m-%d %H:%M} UTC" if last_success else ", never ok"
    streak = f" ({failures} failures in a row{since})" if failures > 1 else ""
    return f"error: {error}{streak}"
