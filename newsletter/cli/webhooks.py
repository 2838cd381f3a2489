"""``newsletter webhooks ...``: deliver the queued webhooks now, list the endpoints, make a secret."""

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.core.credentials import new_webhook_secret
from newsletter.core.errors import StateError

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def webhooks() -> None:
    """Deliver the queued webhooks now, list the endpoints and their deliveries, make a secret.

    Endpoints are declared as [[webhooks]] in newsletter.toml; the daemon delivers
    every few seconds, this command when you ask.

    \b
    Example:
      newsletter webhooks list
      newsletter webhooks deliver
    """


@webhooks.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def deliver(app: AppContext, as_json: bool) -> None:
    """Queue the captured events for their endpoints and post every delivery that is due.

    A delivery that fails waits (30 s, doubling up to 6 hours) and is tried again by
    the next round, until its endpoint's max_attempts. Exit status 1 if an attempt failed.

    \b
    Example:
      newsletter webhooks deliver
      newsletter webhooks deliver --json
    """
    from newsletter.delivery import webhooks as library

    report = library.run(app.site)
    if as_json:
        emit_json(report)
    else:
        lines = report.lines()
        for line in lines:
            echo(line)
        if not lines:
            echo("nothing was due")
    if report.retrying or report.given_up:
        raise StateError(
            f"{len(report.retrying) + len(report.given_up)} delivery(ies) failed, listed above "
            "(see `newsletter webhooks list`)"
        )


@webhooks.command("list")
@click.option("--group", metavar="SLUG", help="Only the endpoints that name this group, with its deliveries.")
@click.option(
    "--recent", default=10, show_default=True, help="How many recent deliveries to show per endpoint."
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: AppContext, group: str | None, recent: int, as_json: bool) -> None:
    """List the endpoints, their deliveries per status, and their latest attempts.

    \b
    Example:
      newsletter webhooks list
      newsletter webhooks list --group uk --json
    """
    from newsletter.delivery import webhooks as library

    if group is not None:
        app.settings.group(group)
    with app.site.transaction() as session:
        views = library.endpoints(session, app.settings, group, recent=max(0, recent))
    if as_json:
        emit_json(views)
        return
    if not views:
        echo("no webhooks are declared ([[webhooks]] in newsletter.toml)")
        return
    for view in views:
        counts = ", ".join(f"{count} {status}" for status, count in sorted(view.counts.items())) or "none yet"
        scope = ", ".join(view.groups) or "the whole site"
        echo(f"{view.name}: {view.url} ({scope}; {', '.join(view.events)}) - {counts}")
        table(
            ["id", "event", "group", "status", "attempts", "last try", "answer"],
            [
                (
                    row.id,
                    row.topic,
                    row.group or "",
                    row.status,
                    row.attempts,
                    row.last_attempt_at.isoformat(timespec="seconds") if row.last_attempt_at else "",
                    f"HTTP {row.last_status} {row.last_response}".strip()
                    if row.last_status is not None
                    else row.last_error,
                )
                for row in view.recent
            ],
        )


@webhooks.command("new-secret")
def new_secret() -> None:
    """Print a new random signing secret (whsec_...), to put in the variable secret_env names.

    \b
    Example:
      newsletter webhooks new-secret
      export NEWSLETTER_WEBHOOK_CRM_SECRET=$(newsletter webhooks new-secret)
    """
    echo(new_webhook_secret())
