"""``newsletter bounces ...``: act on bounces and complaints, and count them per edition."""

import sys

import click

from newsletter import feedback as library
from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def bounces() -> None:
    """Process bounces and spam complaints; count them per edition."""


class _DryRun(Exception):
    """Raised inside the transaction so a dry run rolls everything back.

    Not a NewsletterError: it never leaves this module and is never shown to anyone.
    """


@bounces.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@pass_app
def process(app: AppContext, paths: tuple[str, ...], as_json: bool, dry_run: bool) -> None:
    """Read bounces and complaints from PATHs and act on them.

    A PATH is an .eml file, an mbox file, a Maildir folder, or '-' for one message
    on standard input (for the mail server's pipe). Hard bounces end the address's
    memberships at once; soft bounces add to a score ([bounces] in newsletter.toml);
    ARF complaints end the membership as 'complained'. Success notices, auto-replies
    and ordinary mail change nothing. Mail is only read, never moved or deleted, and
    a report already processed is skipped, so running twice is harmless.

    \b
    Example:
      newsletter bounces process /var/mail/news-bounces/
      newsletter bounces process --dry-run saved-bounce.eml
      newsletter bounces process - < bounce.eml
    """
    stdin = sys.stdin.buffer if "-" in paths else None
    report = None
    try:
        with app.site.transaction() as session:
            report = library.process(
                session, app.settings, library.read_inputs(paths, stdin), actor=app.actor
            )
            report.dry_run = dry_run
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    assert report is not None
    if as_json:
        emit_json(report)
        return
    table(
        ["file", "verdict", "recipients", "action"],
        [(o.source, o.verdict, ", ".join(o.recipients) or "-", o.action) for o in report.outcomes],
    )
    echo(f"{'dry run, nothing changed: ' if dry_run else ''}{report.summary()}")


@bounces.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def report(app: AppContext, as_json: bool) -> None:
    """Bounces and complaints per edition (complaint rates above 0.1% hurt delivery).

    \b
    Example:
      newsletter bounces report
      newsletter bounces report --json
    """
    with app.site.transaction() as session:
        rows = library.per_edition(session)
    if as_json:
        emit_json(rows)
        return
    table(
        ["edition", "group", "sent", "bounces", "complaints", "rate", "subject"],
        [
            (r.edition_id, r.group, r.sent, r.bounces, r.complaints, _percent(r.complaint_rate), r.subject)
            for r in rows
        ],
    )


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"
