"""``newsletter users ...``: the people who sign in to the workspace, and their roles."""

import click

from newsletter.accounts import signin
from newsletter.accounts import users as library
from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.core.models import utcnow

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def users() -> None:
    """Add, list and remove workspace users; print a sign-in link.

    Roles: admin (the whole site), editor and contributor (per group), and any
    [roles.NAME] the site declares in newsletter.toml.
    """


@users.command()
@click.argument("email")
@click.option(
    "--role", required=True, help="The role to give: admin, editor, contributor, or one of the site's own."
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="SLUG",
    help="A group the role applies to (repeatable); not for a site-wide role such as admin.",
)
@click.option("--name", help="The person's name, as the workspace shows it.")
@pass_app
def add(app: AppContext, email: str, role: str, groups: tuple[str, ...], name: str | None) -> None:
    """Create the user EMAIL, or give them ROLE on more groups (nothing is taken away).

    \b
    Example:
      newsletter users add ada@example.org --role admin
      newsletter users add bo@example.org --role editor --group uk --group dach
      newsletter users add cy@example.org --role contributor --group cepiug --name "Cy Wu"
    """
    with app.site.transaction() as session:
        added = library.add(session, app.settings, email, role, groups, actor=app.actor, name=name)
    echo(str(added))


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List the users with their roles, whether they have a password, and their live sessions.

    \b
    Example:
      newsletter users list
      newsletter users list --json
    """
    with app.site.transaction() as session:
        rows = library.listing(session, utcnow())
    if as_json:
        emit_json(rows)
        return
    table(
        ["email", "name", "roles", "password", "sessions", "last sign-in"],
        [
            (
                u.email,
                u.name,
                ", ".join(f"{r['role']} of {r['group']}" if r["group"] else str(r["role"]) for r in u.roles),
                "yes" if u.password else "no",
                u.sessions,
                u.last_sign_in_at.strftime("%Y-%m-%d %H:%M") if u.last_sign_in_at else "never",
            )
            for u in rows
        ],
    )


@users.command()
@click.argument("email")
@pass_app
def remove(app: AppContext, email: str) -> None:
    """Remove the user EMAIL: their roles go, and every browser they signed in is signed out.

    \b
    Example:
      newsletter users remove bo@example.org
    """
    with app.site.transaction() as session:
        ended = library.remove(session, email, actor=app.actor)
    echo(f"removed: {email.strip()} ({ended} session(s) ended)")


@users.command("login-link")
@click.argument("email")
@pass_app
def login_link(app: AppContext, email: str) -> None:
    """Print a one-time sign-in link for EMAIL (the link is the last word on the line).

    For a first sign-in or a recovery: the link works once, within 15 minutes, under
    the site's base_url. Hand it to the person over a channel you trust.

    \b
    Example:
      newsletter users login-link ada@example.org
    """
    with app.site.transaction() as session:
        link = signin.login_link(session, email, now=utcnow(), actor=app.actor)
    echo(f"sign-in link for {link.email} (once, within 15 minutes): {link.url(app.settings)}")


@users.command()
@click.argument("email")
@click.option("--clear", is_flag=True, help="Remove the password: EMAIL signs in by emailed link only.")
@pass_app
def password(app: AppContext, email: str, clear: bool) -> None:
    """Set (asked twice, not echoed) or clear the password EMAIL may sign in with.

    Passwords are optional: every user can sign in by emailed link. Only an argon2
    hash is stored.

    \b
    Example:
      newsletter users password ada@example.org
      newsletter users password ada@example.org --clear
    """
    new = None if clear else click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with app.site.transaction() as session:
        library.set_password(session, email, new, actor=app.actor)
    echo(f"password {'cleared' if clear else 'set'}: {email.strip()}")
