"""The ``newsletter`` command: a thin layer that parses, calls the library, and prints.

The subcommands load lazily: ``newsletter --help`` and ``--version`` import click
and this module only, and a command imports its own module (and through it the
library, SQLAlchemy, the renderer...) when it runs. :data:`COMMANDS` says where each
command lives and repeats its one-line summary for the top-level help;
tests/test_cli_contract.py checks that each summary matches the command's own.
"""

import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from newsletter.cli.context import AppContext
from newsletter.core.errors import NewsletterError

# name -> (module, attribute, the first line of the command's help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "bounces": (
        "newsletter.cli.bounces",
        "bounces",
        "Process bounces and spam complaints; count them per edition.",
    ),
    "check": (
        "newsletter.cli.site",
        "check",
        "Validate the site: settings, schedules, templates, subscriber files and the SMTP relay.",
    ),
    "collect": (
        "newsletter.cli.schedule",
        "collect",
        "Fetch every feed source now and add its new entries to the item pool.",
    ),
    "daemon": (
        "newsletter.cli.schedule",
        "daemon",
        "Run the scheduler until stopped (SIGTERM or Ctrl-C finish the work in hand first).",
    ),
    "editions": (
        "newsletter.cli.editions",
        "editions",
        "Build, preview, approve and send each group's edition.",
    ),
    "init": (
        "newsletter.cli.site",
        "init",
        "Create a new site folder in DIRECTORY, with its database, ready to run.",
    ),
    "items": ("newsletter.cli.items", "items", "Queue, edit, approve, reject and target news items."),
    "migrate": (
        "newsletter.cli.site",
        "migrate",
        "Bring the database's schema to the revision this version of newsletter needs.",
    ),
    "run-due": (
        "newsletter.cli.schedule",
        "run_due",
        "Do one scheduler tick: collect what is due, build what is due, send what is approved.",
    ),
    "send-test": (
        "newsletter.cli.editions",
        "send_test",
        "Send one copy of an edition, marked [TEST], to an address (any state).",
    ),
    "serve": (
        "newsletter.cli.web",
        "serve",
        "Serve the subscriber pages, the archive and the editors' workspace (/admin/).",
    ),
    "status": (
        "newsletter.cli.site",
        "status",
        "Show members, editions and items per group, each source's health and each schedule's next run.",
    ),
    "subscribers": (
        "newsletter.cli.subscribers",
        "subscribers",
        "Import, add, remove, list, export and forget subscribers.",
    ),
    "tokens": (
        "newsletter.cli.tokens",
        "tokens",
        "Create, list and revoke the JSON API's bearer tokens.",
    ),
    "users": (
        "newsletter.cli.users",
        "users",
        "Add, list and remove workspace users; print a sign-in link.",
    ),
    "webhooks": (
        "newsletter.cli.webhooks",
        "webhooks",
        "Deliver the queued webhooks now, list the endpoints and their deliveries, make a secret.",
    ),
    "worker": (
        "newsletter.cli.worker",
        "worker",
        "Deliver the due messages of every edition being sent; run several on PostgreSQL.",
    ),
}


class _CliError(click.ClickException):
    """A library error shown as one line on stderr with the error's exit code.

    Not a NewsletterError: it is click's own type, which click prints and exits with;
    it only carries a NewsletterError's message to the terminal.
    """

    def show(self, file: Any = None) -> None:
        # Loaded here: `newsletter --help` must not import rich. Error texts quote names,
        # titles and relay replies, so they are made printable like every human line.
        from newsletter.cli.output import echo

        echo(f"error: {self.format_message()}", err=True)


class _CliUsageError(_CliError):
    """A usage mistake or an InputError: exit code 2, as click gives usage errors.

    Click's type like :class:`_CliError`, so not a NewsletterError either.
    """

    exit_code = 2


def _cli_error(error: NewsletterError) -> _CliError:
    return (_CliUsageError if error.exit_code == 2 else _CliError)(str(error))


def _usage_error(error: click.UsageError) -> _CliUsageError:
    # Click would print the usage and a hint on lines of their own; keep it to one line.
    hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
    return _CliUsageError(f"{error.format_message().rstrip('.')}{hint}")


def _database_error(exc: Exception) -> NewsletterError | None:
    """A SQLAlchemy error as one line; None for any other exception.

    SQLAlchemy is not imported to ask: if no command loaded it, nothing raised one.
    """
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, errors.SQLAlchemyError):
        return None
    message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return NewsletterError(f"database error: {message}; nothing was changed")


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """Import a command's modules with the cyclic garbage collector paused.

    Loading SQLAlchemy, SQLModel and the models makes hundreds of thousands of objects
    that live as long as the process; their allocations trigger collections that scan
    them again and again (about 0.15 s of an idle ``run-due``). Afterwards they are
    moved out of the collector's view (``gc.freeze``), as long-lived start-up state.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class NewsletterGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _ = COMMANDS[cmd_name]
            with _loading():
                command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from :data:`COMMANDS`: listing them imports none of them."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            # A stand-in with the summary as its help, shortened as click shortens any.
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][2])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_error(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_error(exc) from exc
        except NewsletterError as exc:
            raise _cli_error(exc) from exc
        except BrokenPipeError:
            # The reader went away (`newsletter status | head`): not an error to report.
            # Click ends such a command quietly (exit 1) once it gets this back.
            raise
        except OSError as exc:
            # A safety net: the library turns the OSErrors it meets into FileAccessError,
            # ConfigError or InputError where they happen. One that slips past (a file
            # or folder the command needs cannot be used) is still one line, not a crash.
            where = f"{exc.filename}: " if exc.filename else ""
            raise _cli_error(NewsletterError(f"{where}{exc.strerror or exc}")) from exc
        except KeyboardInterrupt:
            click.echo("interrupted; the current change was rolled back", err=True)
            sys.exit(130)
        except Exception as exc:
            error = _database_error(exc)
            if error is None:
                raise
            raise _cli_error(error) from exc


@click.group(name="newsletter", cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--site",
    "site_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="NEWSLETTER_SITE",
    show_envvar=True,
    help="The site folder (the one holding newsletter.toml). Default: the current folder.",
)
@click.option(
    "--database-url",
    metavar="URL",
    help="Override [database] url, e.g. postgresql+psycopg://postgres@127.0.0.1/news",
)
@click.option("--transport", type=click.Choice(["outbox", "smtp"]), help="Override [delivery] transport.")
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, site_dir: Path | None, database_url: str | None, transport: str | None) -> None:
    """Collect patent-information news, build each group's edition, and send it.

    \b
    Quick tour of the example site:
      newsletter check
      newsletter migrate
      newsletter subscribers import uk subscribers/uk.csv
      newsletter items add --file samples/items/2026-11-wipo-user-survey.md
      newsletter items list
      newsletter status

    Settings come from newsletter.toml, then NEWSLETTER_* environment variables,
    then these options. Secrets come only from the environment (or, for the SMTP
    password, a file outside the site folder).
    """
    ctx.obj = AppContext(site_dir, {"database.url": database_url, "delivery.transport": transport})
    ctx.call_on_close(ctx.obj.close)
