"""Site-level commands: init, check, status."""

import email.utils
import json
import re
import shutil
from importlib import resources
from pathlib import Path

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import emit_json, table
from newsletter.core.errors import InputError
from newsletter.operations.check import check_site
from newsletter.operations.status import site_status

pass_app = click.make_pass_decorator(AppContext)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="My Newsletter", show_default=True, help="The site's name.")
def init(directory: Path, name: str) -> None:
    """Create a new site folder in DIRECTORY, ready to run.

    \b
    Example:
      newsletter init ~/cepiug-news --name "CEPIUG News"
      cd ~/cepiug-news && newsletter check
    """
    if (directory / "newsletter.toml").exists():
        raise InputError(f"{directory} already holds a site (newsletter.toml); nothing was changed")
    skeleton = resources.files("newsletter") / "skeleton"
    directory.mkdir(parents=True, exist_ok=True)
    with resources.as_file(skeleton) as source:
        for path in sorted(Path(source).rglob("*")):
            relative = path.relative_to(source)
            target = directory / (".gitignore" if relative.name == "gitignore" else relative)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            elif path.name == "newsletter.toml":
                target.write_text(_settings_text(path.read_text(encoding="utf-8"), name), encoding="utf-8")
            elif not target.exists():
                shutil.copyfile(path, target)
    click.echo(f"created site {name!r} in {directory}")
    click.echo(f"next: cd {directory} && newsletter check")


# A display name made of these characters needs no quotes in an address (RFC 5322 atoms).
_ATOMS = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]+")


def _settings_text(skeleton: str, name: str) -> str:
    """The skeleton's newsletter.toml with the site's name written in as valid TOML.

    Any name works: "Patentinformation Österreich", "News, Weekly" or "R&D \\ IP"
    become a quoted display name in the sender, and every value is escaped for TOML.
    """
    name = " ".join(name.split()) or "My Newsletter"
    display = name if _ATOMS.fullmatch(name) else f'"{email.utils.quote(name)}"'
    # A JSON string is also a valid TOML basic string.
    sender = json.dumps(f"{display} <news@example.org>", ensure_ascii=False)
    text = skeleton.replace('"{name} <news@example.org>"', sender)
    return text.replace('"{name}"', json.dumps(name, ensure_ascii=False))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate the site: settings, schedules, templates and subscriber files.

    Every problem is printed as FILE:LINE: KEY: MESSAGE; the exit status is 1 if
    there is any.

    \b
    Example:
      newsletter check
      newsletter --site /srv/newsletter check --json
    """
    app = ctx.find_object(AppContext)
    site_dir = (app.site_dir if app and app.site_dir else Path(".")).resolve()
    problems, counts = check_site(site_dir)
    if as_json:
        emit_json(
            {
                "ok": not problems,
                "checked": counts,
                "problems": [
                    {"file": str(p.file), "line": p.line, "key": p.key, "message": p.message}
                    for p in problems
                ],
            }
        )
    else:
        for problem in problems:
            click.echo(str(problem), err=True)
        if not problems:
            click.echo(
                f"site OK: {counts['groups']} groups, {counts['schedules']} schedules, "
                f"{counts['templates']} templates"
            )
    if problems:
        if not as_json:
            click.echo(f"{len(problems)} problem(s) found", err=True)
        ctx.exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show members, editions and items per group, each source's health and each schedule's next run.

    \b
    Example:
      newsletter status
      newsletter status --json
    """
    with app.site.transaction() as session:
        report = site_status(session, app.settings)
    if as_json:
        emit_json(report)
        return
    click.echo(f"site: {report.site}\ndatabase: {report.database}")

    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "-"

    table(
        ["group", "language", "timezone", "members", "editions"],
        [(g.slug, g.language, g.timezone, counts(g.members), counts(g.editions)) for g in report.groups],
    )
    click.echo(f"items: {counts(report.items)}")
    if report.sources:
        click.echo()
        table(
            ["source", "items", "last fetched", "result"],
            [
                (
                    s.name,
                    s.items,
                    s.last_fetched_at.strftime("%Y-%m-%d %H:%M UTC") if s.last_fetched_at else "never",
                    f"error: {s.last_error}" if s.last_error else "ok",
                )
                for s in report.sources
            ],
        )
    if report.schedules:
        click.echo()
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
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
