"""``newsletter editions ...`` and ``newsletter send-test``: build, look, approve, send."""

import contextlib
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.core.credentials import signing_notice
from newsletter.core.errors import InputError, LeaseHeld, NothingToBuild, file_error
from newsletter.core.i18n import available_languages, base_language, reader_language
from newsletter.core.models import EditionStatus
from newsletter.delivery.lease import describe
from newsletter.delivery.outgoing import send_test as send_test_copy
from newsletter.delivery.runner import WOULD_SEND, WOULD_SKIP, Runner, SendResult
from newsletter.delivery.transports import open_transport
from newsletter.editions import build as library
from newsletter.editions.render import Renderer, check_size

pass_app = click.make_pass_decorator(AppContext)
# `editions send` exits with this when the relay kept failing and the edition paused.
PAUSED_EXIT = 3


@click.group()
def editions() -> None:
    """Build, preview, approve and send each group's edition."""


@editions.command()
@click.argument("group")
@click.option("--json", "as_json", is_flag=True, help="Print the new edition as JSON.")
@pass_app
def build(app: AppContext, /, group: str, as_json: bool) -> None:
    """Build a draft edition for GROUP from the approved items it has not had yet.

    \b
    Example:
      newsletter editions build dach
      newsletter editions preview 3 --output dach.html
    """
    try:
        with app.site.transaction() as session:
            edition = library.build(session, app.settings, Renderer(app.settings), group, actor=app.actor)
            rows = library.list_editions(session, app.settings, group=group)
            warnings = check_size(edition.html or "", allow_large=True)
    except NothingToBuild as exc:
        # Not an error: a scheduled or scripted build simply has nothing new this time.
        if as_json:
            emit_json(None)
        echo(str(exc), err=as_json)
        return
    row = next(r for r in rows if r.id == edition.id)
    for warning in warnings:
        echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(row)
        return
    echo(f"built edition #{row.id} for {group} ({row.status}): {row.items} item(s), subject {row.subject!r}")
    echo(f"next: newsletter editions preview {row.id}; newsletter editions approve {row.id}")


@editions.command("list")
@click.option("--group", help="Only this group's editions.")
@click.option("--status", type=click.Choice([s.value for s in EditionStatus]), help="Only this state.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: AppContext, /, group: str | None, status: str | None, as_json: bool) -> None:
    """List editions, newest first, with their delivery counts.

    \b
    Example:
      newsletter editions list
      newsletter editions list --group dach --status draft --json
    """
    with app.site.transaction() as session:
        rows = library.list_editions(session, app.settings, group=group, status=status)
    if as_json:
        emit_json(rows)
        return
    table(
        ["id", "group", "status", "items", "deliveries", "created", "subject"],
        [
            (
                r.id,
                r.group,
                r.status,
                r.items,
                ", ".join(f"{k} {v}" for k, v in sorted(r.deliveries.items())) or "-",
                r.created_at.strftime("%Y-%m-%d %H:%M"),
                r.subject,
            )
            for r in rows
        ],
    )


@editions.command()
@click.argument("edition_id", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.option("--language", help="Render in this language (default: the group's).")
@pass_app
def preview(
    app: AppContext, /, edition_id: int, output: Path | None, as_text: bool, language: str | None
) -> None:
    """Render an edition as a reader would see it (links are not personal).

    \b
    Example:
      newsletter editions preview 3 --language fr --output /tmp/fr.html
      newsletter editions preview 3 --text | less
    """
    language = _known(language)
    renderer = Renderer(app.settings)
    with app.site.transaction() as session:
        edition = library.get_edition(session, edition_id)
        content = library.content(session, app.settings, edition)
    reader = reader_language(language, content.group.language)
    rendered = renderer.render(content, reader, allow_large=True)
    html, text = library.neutral(rendered, app.settings)
    body = text if as_text else html
    for warning in rendered.warnings:
        echo(f"warning: {warning}", err=True)
    if output is None:
        # The document asked for, as it is (often redirected to a file); not a message.
        click.echo(body, nl=False)
        return
    try:
        output.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise file_error(exc, "cannot write", output) from None
    echo(f"wrote {output} ({len(body.encode('utf-8')) // 1000} KB, {reader})", err=True)


@editions.command()
@click.argument("edition_id", type=int)
@click.option("--allow-large", is_flag=True, help="Approve even if the HTML is over 100 KB.")
@pass_app
def approve(app: AppContext, /, edition_id: int, allow_large: bool) -> None:
    """Approve a draft edition for sending (it is rendered again with the items as they are now).

    \b
    Example:
      newsletter editions approve 4
    """
    with app.site.transaction() as session:
        edition, rendered = library.approve(
            session,
            app.settings,
            Renderer(app.settings),
            edition_id,
            actor=app.actor,
            allow_large=allow_large,
        )
    for warning in rendered.warnings:
        echo(f"warning: {warning}", err=True)
    echo(f"approved edition #{edition.id}: {edition.subject}")
    echo(f"next: newsletter editions send {edition.id}")


@editions.command()
@click.argument("edition_id", type=int)
@pass_app
def cancel(app: AppContext, /, edition_id: int) -> None:
    """Cancel an edition that has not been sent; its items go back to the pool.

    \b
    Example:
      newsletter editions cancel 4
    """
    with app.site.transaction() as session:
        edition = library.cancel(session, edition_id, actor=app.actor)
    echo(f"cancelled edition #{edition.id}")


class _Bar:
    """A rich progress bar on a terminal; silence elsewhere."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def start(self, total: int) -> None:
        if sys.stderr.isatty() and total:
            self.progress = Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("send", total=total)

    def advance(self, count: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, count)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@editions.command()
@click.argument("edition_id", type=int)
@click.option("--dry-run", is_flag=True, help="Render and count the audience; send nothing (a draft too).")
@click.option("--allow-large", is_flag=True, help="Send even if the HTML is over 100 KB.")
@click.option("--wait", is_flag=True, help="If another process is sending it, wait for that one to finish.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def send(
    app: AppContext, /, edition_id: int, dry_run: bool, allow_large: bool, wait: bool, as_json: bool
) -> None:
    """Send an approved edition to every active member of its group.

    A send that was interrupted, or paused because the relay kept failing, resumes
    where it stopped: nobody gets a second copy. If another process is sending the
    edition, this one says who and stops (exit 1); with --wait it waits for that one
    to finish or to die, then sends what is left. Exit status 3 means the edition
    paused (the relay kept failing): fix the relay and run the same command again.
    Through the outbox transport the messages only become files: the edition is then
    `written`, not sent, and can still be sent for real.

    \b
    Example:
      newsletter editions send 3 --dry-run
      NEWSLETTER_SMTP_URL=smtp+starttls://user:pw@relay:587 newsletter --transport smtp editions send 3
      newsletter --transport smtp editions send 3 --wait
    """
    bar = _Bar()

    def waiting(held: LeaseHeld) -> None:
        since = held.since.strftime("%H:%M:%S UTC")
        echo(
            f"waiting: {describe(held.owner)} is sending edition #{edition_id} (since {since}); "
            "Ctrl-C stops waiting",
            err=True,
        )

    runner = Runner(
        app.site, Renderer(app.settings), open_transport(app.settings), actor=app.actor, progress=bar
    )
    try:
        result = runner.send(edition_id, dry_run=dry_run, allow_large=allow_large, wait=wait, on_wait=waiting)
    finally:
        bar.stop()
    if not dry_run and (notice := signing_notice(app.settings)):
        echo(notice, err=True)
    if as_json:
        emit_json(result)
        return
    _print_result(app, result)
    if result.report.paused:
        # Scripts and cron jobs must notice: the edition is not sent until someone acts.
        raise click.exceptions.Exit(PAUSED_EXIT)


def _print_result(app: AppContext, result: SendResult) -> None:
    edition_id = result.edition_id
    for warning in result.warnings:
        echo(f"warning: {warning}", err=True)
    languages = ", ".join(f"{k} {v}" for k, v in sorted(result.languages.items()))
    if result.dry_run:
        skips = result.totals.get(WOULD_SKIP, 0)
        if skips:
            languages = (
                f"active members by language: {languages}; {skips} of them chose only topics "
                "this edition does not carry"
            )
        echo(
            f"dry run: edition #{edition_id} would go to {result.totals[WOULD_SEND]} member(s) "
            f"({languages or 'none'}); nothing was sent"
        )
        return
    if result.waited_for:
        echo(f"waited for {result.waited_for}, which held the edition", err=True)
    report = result.report
    echo(
        f"edition #{edition_id} {result.status}: sent {report.sent}, failed {report.failed}, "
        f"skipped {report.skipped}, deferred {report.deferred} (via {result.transport})"
    )
    for error in report.errors:
        echo(f"  {error}", err=True)
    if report.paused:
        echo("the relay kept failing, so the edition is paused; fix it and run send again", err=True)
    elif report.deferred:
        echo(
            f"{report.deferred} temporary failure(s) will be retried by `newsletter editions send "
            f"{edition_id}`",
            err=True,
        )
    held = result.totals.get("sending", 0)
    if result.status == EditionStatus.SENDING and held:
        echo(f"{held} message(s) are still in the hands of other workers", err=True)
    if not result.delivered:
        folder = app.settings.outbox_dir / f"edition-{edition_id}"
        with contextlib.suppress(ValueError):
            folder = folder.relative_to(Path.cwd())
        echo(
            f"outbox only: the messages were written to {folder} and nobody received them; "
            f"to deliver them: newsletter --transport smtp editions send {edition_id}"
        )


@click.command("send-test")
@click.argument("edition_id", type=int)
@click.option("--to", "to", required=True, help="Address to send the test copy to.")
@click.option("--language", help="Language of the copy (default: the group's).")
@pass_app
def send_test(app: AppContext, /, edition_id: int, to: str, language: str | None) -> None:
    """Send one copy of an edition, marked [TEST], to an address (any state).

    \b
    Example:
      newsletter send-test 3 --to editor@example.org --language de
    """
    if not to.strip():
        raise InputError("give an address with --to")
    language = _known(language)
    message_id = send_test_copy(
        app.site,
        Renderer(app.settings),
        open_transport(app.settings),
        edition_id,
        to,
        actor=app.actor,
        language=language,
    )
    echo(f"test copy of edition #{edition_id} sent to {to.strip()} ({message_id})")
    if notice := signing_notice(app.settings):
        echo(notice, err=True)


def _known(language: str | None) -> str | None:
    """A --language the emails exist in; anything else is refused, not quietly replaced."""
    if language is None or base_language(language) in available_languages():
        return language
    known = ", ".join(sorted(available_languages()))
    raise InputError(f"--language {language!r}: the emails exist in {known}")
