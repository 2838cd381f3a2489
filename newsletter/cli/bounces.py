"""``newsletter bounces ...``: act on bounces and complaints, and count them per edition."""

import sys
from dataclasses import asdict

import click

from newsletter import feedback as library
from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.delivery.probes import send_probes
from newsletter.delivery.transports import open_transport

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
    and ordinary mail change nothing. A report already processed is skipped, so
    running twice is harmless.

    With [delivery] bounce_address set, only reports that come back to the member's
    own signed VERP address act; others are recorded as unverified and a probe is
    sent (through the configured transport) whose own bounce ends the membership.
    A mail to the List-Unsubscribe mailto: address unsubscribes by its signed token.
    Mail is only read, except a message too big or nested too deep to read: it is
    reported and, in a Maildir, moved to the Maildir's .quarantine folder.

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
    probes = None
    if not dry_run:
        library.quarantine(report)
        settings = app.settings
        probes = send_probes(app.site, lambda: open_transport(settings), actor=app.actor)
    if as_json:
        emit_json({**asdict(report), "probes": probes})
        return
    table(
        ["file", "verdict", "recipients", "action"],
        [(o.source, o.verdict, ", ".join(o.recipients) or "-", o.action) for o in report.outcomes],
    )
    for item in report.unreadable:
        echo(
            f"unreadable: {item.source}: {item.reason}"
            + (f"; moved to {item.moved_to}" if item.moved_to else "")
        )
    echo(f"{'dry run, nothing changed: ' if dry_run else ''}{report.summary()}")
    if probes is not None and (probes.sent or probes.refused or probes.deferred or probes.error):
        echo(probes.summary())


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
