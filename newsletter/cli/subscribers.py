"""``newsletter subscribers ...``: lists of people per group."""

import sys
from pathlib import Path

import click

from newsletter.audience import export as exports
from newsletter.audience import subscribers as library
from newsletter.audience.formats import FORMATS, Format
from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.core.errors import InputError, StateError
from newsletter.core.models import MembershipStatus

pass_app = click.make_pass_decorator(AppContext)
STATUSES = [s.value for s in MembershipStatus]


@click.group()
def subscribers() -> None:
    """Import, add, remove, list, export and forget subscribers."""


@subscribers.command("import")
@click.argument("group")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option("--strict", is_flag=True, help="Change nothing if any row is rejected.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="csv (ours), listmonk (its subscriber export), mailman (a member list); auto tells from the file.",
)
@pass_app
def import_(
    app: AppContext, group: str, file: Path, as_json: bool, dry_run: bool, strict: bool, file_format: Format
) -> None:
    """Import FILE (CSV with an email column, optional name and language) into GROUP.

    Comma- or semicolon-separated, UTF-8 with or without BOM. Addresses are validated
    and normalised; repeated rows are merged; importing the same file again changes
    nothing. Unsubscribed, bounced and complained members stay as they are.

    A listmonk export keeps its status: blocklisted people are recorded as unsubscribed
    (never mailed), disabled ones are skipped. A Mailman member list holds one address
    a line, bare or as "Name <addr>".

    \b
    Example:
      newsletter subscribers import dach subscribers/dach.csv
      newsletter subscribers import uk export.csv --dry-run --json
      newsletter subscribers import uk subscribers.csv --format listmonk
      newsletter subscribers import fr members.txt --format mailman
    """
    with app.site.transaction() as session:
        report = library.import_csv(
            session,
            app.settings,
            group,
            file,
            actor=app.actor,
            dry_run=dry_run,
            strict=strict,
            format=file_format,
        )
    if as_json:
        emit_json(report)
    else:
        _print_report(report, dry_run)
    if strict and report.rejected:
        raise InputError(f"{len(report.rejected)} row(s) rejected and --strict given; nothing was imported")


def _print_report(report: library.ImportReport, dry_run: bool) -> None:
    prefix = "dry run, would have: " if dry_run else ""
    echo(f"{prefix}{report.summary()}")
    sections = [
        ("rejected", report.rejected),
        ("merged duplicate rows", report.duplicates),
        ("left as they were", report.kept),
        ("not imported", report.skipped),
        ("warnings", report.warnings),
    ]
    for title, notes in sections:
        if notes:
            echo(f"{title}:")
            for note in notes:
                echo(f"  line {note.line}: {note.email!r}: {note.reason}")
    if report.ignored_columns:
        echo(f"ignored columns: {', '.join(report.ignored_columns)}")


@subscribers.command()
@click.argument("group")
@click.argument("email")
@click.option("--name", help="The person's name, used in the greeting and the To header.")
@click.option("--language", help="Their language (en, de, fr, ...); default: the group's.")
@pass_app
def add(app: AppContext, group: str, email: str, name: str | None, language: str | None) -> None:
    """Add EMAIL to GROUP as an active member (the operator vouches for consent).

    \b
    Example:
      newsletter subscribers add fr "Marie Dupont <marie@example.org>" --language fr
    """
    with app.site.transaction() as session:
        outcome = library.add(
            session, app.settings, group, email, actor=app.actor, name=name, language=language
        )
    echo(f"{outcome}: {email.strip()} in {group}")


@subscribers.command()
@click.argument("group")
@click.argument("email")
@pass_app
def remove(app: AppContext, group: str, email: str) -> None:
    """Unsubscribe EMAIL from GROUP (their other groups are untouched).

    \b
    Example:
      newsletter subscribers remove uk jane.doe@example.org
    """
    with app.site.transaction() as session:
        changed = library.remove(session, app.settings, group, email, actor=app.actor)
    echo(f"{'unsubscribed' if changed else 'already not active'}: {email.strip()} from {group}")


@subscribers.command("list")
@click.argument("group")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only members in this state (repeatable). Default: all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: AppContext, group: str, statuses: tuple[str, ...], as_json: bool) -> None:
    """List the members of GROUP.

    \b
    Example:
      newsletter subscribers list uk
      newsletter subscribers list uk --status pending --status bounced --json
    """
    with app.site.transaction() as session:
        rows = list(exports.members(session, app.settings, group, statuses))
    if as_json:
        emit_json(rows)
        return
    table(
        ["email", "name", "language", "status", "source", "since"],
        [(m.email, m.name, m.language, m.status, m.source, m.since) for m in rows],
    )


@subscribers.command()
@click.argument("group")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option("--all", "everyone", is_flag=True, help="Include pending and ended memberships.")
@pass_app
def export(app: AppContext, group: str, output: Path | None, everyone: bool) -> None:
    """Export GROUP's members as CSV (by default only the active ones).

    A cell a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a
    carriage return) is written with a leading apostrophe; `subscribers import`
    removes it again, so the file imports back unchanged.

    \b
    Example:
      newsletter subscribers export uk --output uk-members.csv
      newsletter subscribers export uk --all > uk-everyone.csv
    """
    statuses = () if everyone else (MembershipStatus.ACTIVE.value,)
    with app.site.transaction() as session:
        rows = exports.members(session, app.settings, group, statuses)
        if output is None:
            exports.export_csv(rows, sys.stdout, list(app.settings.fields))
            return
        count = exports.export_file(rows, output, list(app.settings.fields))
    echo(f"exported {count} member(s) of {group} to {output}", err=True)


@subscribers.command()
@click.argument("email")
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed when no terminal is attached)."
)
@pass_app
def forget(app: AppContext, email: str, yes: bool) -> None:
    """Erase EMAIL everywhere (GDPR erasure); only an anonymous audit line remains.

    Asks before erasing; without a terminal to ask on (a script, cron, a pipe) it
    erases only with --yes.

    \b
    Example:
      newsletter subscribers forget jane.doe@example.org
      newsletter subscribers forget jane.doe@example.org --yes   # from a script
    """
    if not yes:
        if not _can_ask():
            raise InputError(
                f"forget erases {email.strip()} for good: add --yes to confirm (no terminal to ask on)"
            )
        if not click.confirm(
            f"Erase {email.strip()} and all their records? This cannot be undone", default=False
        ):
            raise StateError(f"nothing erased: {email.strip()} is kept")
    with app.site.transaction() as session:
        counts = library.forget(session, email, actor=app.actor)
    echo(
        f"erased {email.strip()}: {counts['memberships']} membership(s), "
        f"{counts['deliveries']} delivery record(s), {counts['events']} event(s)"
    )


def _can_ask() -> bool:
    """Whether a person can answer a question: standard input is a terminal."""
    return sys.stdin.isatty()
