"""The ``newsletter`` command: a thin layer that parses, calls the library, and prints."""

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from newsletter.cli.context import AppContext
from newsletter.core.errors import NewsletterError


class CliError(click.ClickException):
    """A library error shown as one line on stderr with the error's exit code."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CliUsageError(CliError):
    exit_code = 2


def _cli_error(error: NewsletterError) -> CliError:
    return (CliUsageError if error.exit_code == 2 else CliError)(str(error))


def _usage_error(error: click.UsageError) -> CliUsageError:
    # Click would print the usage and a hint on lines of their own; keep it to one line.
    hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
    return CliUsageError(f"{error.format_message().rstrip('.')}{hint}")


class NewsletterGroup(click.Group):
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
            # A file or folder the command needs cannot be used (permissions, a file
            # where a folder should be): the operator's problem, not a crash.
            where = f"{exc.filename}: " if exc.filename else ""
            raise _cli_error(NewsletterError(f"{where}{exc.strerror or exc}")) from exc
        except SQLAlchemyError as exc:
            message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            error = NewsletterError(f"database error: {message}; nothing was changed")
            raise _cli_error(error) from exc
        except KeyboardInterrupt:
            click.echo("interrupted; the current change was rolled back", err=True)
            sys.exit(130)


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
@click.option(
    "--transport", type=click.Choice(["outbox", "smtp", "memory"]), help="Override [delivery] transport."
)
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, site_dir: Path | None, database_url: str | None, transport: str | None) -> None:
    """Collect patent-information news, build each group's edition, and send it.

    \b
    Quick tour of the example site:
      newsletter check
      newsletter subscribers import uk subscribers/uk.csv
      newsletter items add --file samples/items/2026-11-wipo-user-survey.md
      newsletter items list
      newsletter status

    Settings come from newsletter.toml, then NEWSLETTER_* environment variables,
    then these options. Secrets come only from the environment.
    """
    ctx.obj = AppContext(site_dir, {"database.url": database_url, "delivery.transport": transport})
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from newsletter.cli import bounces, editions, items, schedule, site, subscribers, web, worker

    for command in (
        site.init,
        site.check,
        site.status,
        subscribers.subscribers,
        items.items,
        editions.editions,
        editions.send_test,
        schedule.collect,
        schedule.run_due,
        schedule.daemon,
        web.serve,
        bounces.bounces,
        worker.worker,
    ):
        main.add_command(command)


_register()
