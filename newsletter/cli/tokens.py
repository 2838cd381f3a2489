"""``newsletter tokens ...``: bearer tokens for the JSON API under /api/v1/."""

import click

from newsletter.accounts import apitokens as library
from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.core.models import utcnow

pass_app = click.make_pass_decorator(AppContext)


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else "never"


@click.group()
def tokens() -> None:
    """Create, list and revoke the JSON API's bearer tokens.

    A token acts as its user, within that user's roles; a --read-only one may only read.
    """


@tokens.command()
@click.option("--user", "email", required=True, metavar="EMAIL", help="The workspace user the token acts as.")
@click.option("--name", help="A name for the token, unique on the site (default: from the address).")
@click.option("--read-only", is_flag=True, help="The token may read but change nothing (writes get 403).")
@pass_app
def create(app: AppContext, email: str, name: str | None, read_only: bool) -> None:
    """Make a token for EMAIL and print it (the last word on the line; it is shown only once).

    \b
    Example:
      newsletter tokens create --user ada@example.org --name ci-import
      newsletter tokens create --user eve@example.org --read-only
    """
    with app.site.transaction() as session:
        made = library.create(session, email, name=name, read_only=read_only, actor=app.actor, now=utcnow())
    kind = "read-only token" if made.read_only else "token"
    echo(f"{kind} {made.name} for {made.email} (shown once, keep it safe): {made.token}")


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List every token (never the secret): its user, whether read-only, last use, revoked.

    \b
    Example:
      newsletter tokens list
      newsletter tokens list --json
    """
    with app.site.transaction() as session:
        rows = library.listing(session)
    if as_json:
        emit_json(rows)
        return
    table(
        ["name", "user", "access", "created", "last used", "revoked"],
        [
            (
                t.name,
                t.email,
                "read-only" if t.read_only else "read-write",
                _when(t.created_at),
                _when(t.last_used_at),
                _when(t.revoked_at) if t.revoked_at else "",
            )
            for t in rows
        ],
    )


@tokens.command()
@click.option("--user", "email", required=True, metavar="EMAIL", help="Whose token to revoke.")
@click.option("--name", help="The token to revoke (default: every live token of the user).")
@pass_app
def revoke(app: AppContext, email: str, name: str | None) -> None:
    """Revoke a user's token (or all of them): it gets 401 from then on.

    \b
    Example:
      newsletter tokens revoke --user ada@example.org --name ci-import
      newsletter tokens revoke --user eve@example.org
    """
    with app.site.transaction() as session:
        names = library.revoke(session, email, name=name, actor=app.actor, now=utcnow())
    echo(f"revoked: {', '.join(names)} ({email.strip()})")
