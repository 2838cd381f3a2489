"""Accounts: the permission table, the site's own roles, and `newsletter users` on SQLite and PostgreSQL."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from newsletter.accounts import signin
from newsletter.accounts.permissions import Actor, GrantView, can, explain, require, visible_groups
from newsletter.accounts.roles import site_roles
from newsletter.core.errors import BadToken, ConfigError, Forbidden, NotFoundError
from newsletter.core.models import Event, Grant, SignInToken, User, UserSession, utcnow
from newsletter.core.permissions import PERMISSIONS
from newsletter.core.settings import Settings, load_settings
from newsletter.core.site import Site
from tests.conftest import REPO, Cli


@pytest.fixture
def settings() -> Settings:
    return load_settings(REPO, env={})


def actor(settings: Settings, *grants: tuple[str, str | None], active: bool = True) -> Actor:
    return Actor(
        1, "p@example.org", "", active, tuple(GrantView(r, g) for r, g in grants), site_roles(settings)
    )


# --- the permission table ------------------------------------------------------------------

# WORKSPACE.md's table: permission -> (admin, editor, contributor) on their group.
TABLE = {
    "items.propose": (True, True, True),
    "items.review": (True, True, False),
    "editions.edit": (True, True, False),
    "editions.approve": (True, True, False),
    "editions.send": (True, True, False),
    "subscribers.read": (True, True, False),
    "subscribers.write": (True, True, False),
    "subscribers.export": (True, True, False),
    "webhooks.read": (True, True, False),
}
# Site-wide things: admin manages them, an editor reads them, a contributor neither.
SITE_TABLE = {
    "sources.read": (True, True, False),
    "sources.manage": (True, False, False),
    "schedules.read": (True, True, False),
    "schedules.manage": (True, False, False),
    "users.manage": (True, False, False),
    "webhooks.site": (True, False, False),
}


def test_the_table_covers_every_permission() -> None:
    """The tests below walk every permission the code knows, and no other."""
    assert set(TABLE) | set(SITE_TABLE) == set(PERMISSIONS)


@pytest.mark.parametrize("permission", sorted(TABLE))
def test_group_permissions_follow_the_table(settings: Settings, permission: str) -> None:
    """admin anywhere, editor and contributor on their group only, exactly as WORKSPACE.md's table says."""
    admin = actor(settings, ("admin", None))
    editor = actor(settings, ("editor", "uk"))
    contributor = actor(settings, ("contributor", "uk"))
    expected = TABLE[permission]
    assert (
        can(admin, permission, "uk"),
        can(editor, permission, "uk"),
        can(contributor, permission, "uk"),
    ) == (expected)
    # On another group nobody but the admin holds anything.
    assert can(admin, permission, "dach")
    assert not can(editor, permission, "dach")
    assert not can(contributor, permission, "dach")


@pytest.mark.parametrize("permission", sorted(SITE_TABLE))
def test_site_permissions_follow_the_table(settings: Settings, permission: str) -> None:
    """Sources, schedules and users are site-wide: asked without a group."""
    held = tuple(
        can(actor(settings, grant), permission, None)
        for grant in (("admin", None), ("editor", "uk"), ("contributor", "uk"))
    )
    assert held == SITE_TABLE[permission]
    # A site-wide permission is never held "on a group".
    assert not can(actor(settings, ("admin", None)), permission, "uk")


def test_no_grant_inactive_or_nobody_can_do_nothing(settings: Settings) -> None:
    """An actor without grants, a deactivated admin and an anonymous request hold no permission."""
    for who in (actor(settings), actor(settings, ("admin", None), active=False), None):
        assert not any(can(who, p, "uk") or can(who, p, None) for p in PERMISSIONS)
    with pytest.raises(ValueError, match="unknown permission"):
        can(actor(settings, ("admin", None)), "items.destroy", "uk")


def test_require_hides_invisible_groups_and_forbids_visible_ones(settings: Settings) -> None:
    """No permission on a group: NotFoundError (a 404); a visible group's forbidden act: Forbidden (a 403)."""
    contributor = actor(settings, ("contributor", "uk"))
    require(contributor, "items.propose", "uk")
    with pytest.raises(Forbidden):
        require(contributor, "subscribers.read", "uk")
    with pytest.raises(NotFoundError) as hidden:
        require(contributor, "items.propose", "dach")
    with pytest.raises(NotFoundError) as missing:
        require(contributor, "items.propose", "no-such-group")
    # A refusal on an invisible group reads like one on a group that does not exist.
    assert str(hidden.value).replace("dach", "X") == str(missing.value).replace("no-such-group", "X")
    assert visible_groups(contributor, ["cepiug", "uk", "dach"]) == ["uk"]
    assert "refused" in explain(contributor, "subscribers.read", "uk")
    assert "contributor@uk" in explain(contributor, "subscribers.read", "uk")
    assert "allowed" in explain(actor(settings, ("admin", None)), "subscribers.read", "uk")


# --- the site's own roles ------------------------------------------------------------------


def site_with(tmp_path: Path, roles: str) -> Path:
    folder = tmp_path / "rolesite"
    folder.mkdir()
    (folder / "newsletter.toml").write_text(
        (REPO / "newsletter.toml").read_text(encoding="utf-8") + "\n" + roles, encoding="utf-8"
    )
    return folder


def test_a_site_role_gives_exactly_its_permissions(tmp_path: Path) -> None:
    """[roles.reviewer] in newsletter.toml is a role like the built-in ones, on its groups only."""
    folder = site_with(tmp_path, '[roles.reviewer]\npermissions = ["items.propose", "items.review"]\n')
    settings = load_settings(folder, env={})
    reviewer = actor(settings, ("reviewer", "fr"))
    assert {p for p in PERMISSIONS if can(reviewer, p, "fr")} == {"items.propose", "items.review"}
    assert not can(reviewer, "items.review", "uk")
    assert not can(reviewer, "sources.read", None)


@pytest.mark.parametrize(
    ("roles", "wanted"),
    [
        (
            '[roles.reviewer]\npermissions = ["items.review", "items.destroy"]\n',
            "unknown permission(s) 'items.destroy'",
        ),
        ('[roles.editor]\npermissions = ["items.review"]\n', "role 'editor' is built in"),
        ('[roles.helper]\npermissions = ["users.manage"]\n', "add site_wide = true"),
        ("[roles.empty]\npermissions = []\n", "at least one permission"),
        ('[roles.Bad]\npermissions = ["items.review"]\n', "must be lower-case"),
    ],
)
def test_a_bad_site_role_is_a_config_error_with_its_line(tmp_path: Path, roles: str, wanted: str) -> None:
    """Unknown permission, a built-in name, a site-wide act in a group role: one line naming the file."""
    folder = site_with(tmp_path, roles)
    with pytest.raises(ConfigError) as caught:
        load_settings(folder, env={})
    message = str(caught.value)
    assert wanted in message
    assert "newsletter.toml" in message
    assert "\n" not in message


# --- newsletter users ----------------------------------------------------------------------


def one_line_error(cli: Cli, *args: str) -> str:
    result = cli(*args, ok=False)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def listed(cli: Cli) -> dict[str, dict[str, object]]:
    return {u["email"]: u for u in json.loads(cli("users", "list", "--json").stdout)}


def test_users_add_creates_extends_and_lists(cli: Cli) -> None:
    """`users add` makes a user, a second call adds groups (never removes), `list --json` shows it all."""
    assert cli("users", "add", "ada@example.org", "--role", "admin", "--name", "Ada").stdout.startswith(
        "added:"
    )
    assert "added:" in cli("users", "add", "Bo@Example.ORG", "--role", "editor", "--group", "uk").stdout
    extended = cli("users", "add", "bo@example.org", "--role", "editor", "--group", "uk", "--group", "dach")
    assert extended.stdout.strip() == "extended: Bo@example.org (editor of dach)"
    assert cli("users", "add", "BO@example.org", "--role", "editor", "--group", "uk").stdout.startswith(
        "unchanged"
    )
    cli("users", "add", "bo@example.org", "--role", "contributor", "--group", "fr")
    users = listed(cli)
    assert sorted(users) == ["Bo@example.org", "ada@example.org"]
    assert users["ada@example.org"]["roles"] == [{"role": "admin", "group": None}]
    assert users["ada@example.org"]["name"] == "Ada"
    assert sorted((r["role"], r["group"]) for r in users["Bo@example.org"]["roles"]) == [  # type: ignore[attr-defined]
        ("contributor", "fr"),
        ("editor", "dach"),
        ("editor", "uk"),
    ]
    table = cli("users", "list").stdout
    assert "editor of uk" in table
    assert "never" in table
    # Each act is in the audit log under the CLI user's name.
    events = [e for e in cli.events() if e.kind == "user-add"]
    assert len(events) == 5
    assert all(re.fullmatch(r"cli:\S+", e.actor) for e in events)


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (
            ["x@example.org", "--role", "nope", "--group", "uk"],
            "no role 'nope' (known: admin, contributor, editor)",
        ),
        (["x@example.org", "--role", "editor", "--group", "nope"], "no group 'nope'"),
        (["x@example.org", "--role", "admin", "--group", "uk"], "applies to the whole site"),
        (["x@example.org", "--role", "editor"], "name at least one --group"),
        (["not-an-address", "--role", "admin"], "is not a usable address"),
    ],
)
def test_users_add_refuses_bad_input_in_one_line(cli: Cli, args: list[str], wanted: str) -> None:
    """An unknown role or group, a group on admin, none on editor, a bad address: one line, nothing made."""
    assert wanted in one_line_error(cli, "users", "add", *args)
    assert listed(cli) == {}


def test_users_remove_deletes_grants_links_and_sessions(cli: Cli) -> None:
    """`users remove` leaves no grant, no sign-in link and no session behind; a second remove is one line."""
    cli("users", "add", "eve@example.org", "--role", "editor", "--group", "uk")
    cli("users", "login-link", "eve@example.org")
    with cli.database() as session:
        user = session.exec(select(User)).one()
        session.add(
            UserSession(session_hash="x" * 64, user_id=user.id or 0, expires_at=utcnow() + timedelta(hours=1))
        )
        session.commit()
    assert listed(cli)["eve@example.org"]["sessions"] == 1
    assert (
        cli("users", "remove", "EVE@example.org").stdout.strip()
        == "removed: EVE@example.org (1 session(s) ended)"
    )
    with cli.database() as session:
        for table in (User, Grant, SignInToken, UserSession):
            assert session.exec(select(table)).all() == [], table
    assert "no user 'eve@example.org'" in one_line_error(cli, "users", "remove", "eve@example.org")
    assert [e.kind for e in cli.events() if e.kind.startswith("user-")] == ["user-add", "user-remove"]


def test_login_link_prints_a_one_time_url_as_the_last_word(cli: Cli) -> None:
    """The URL is under base_url, the last word; it works once, for 15 minutes; only its hash is stored."""
    cli("users", "add", "ada@example.org", "--role", "admin")
    line = cli("users", "login-link", "ada@example.org").stdout.strip()
    assert len(line.splitlines()) == 1
    url = line.split()[-1]
    assert url.startswith("https://news.example.org/admin/sign-in/")
    token = url.rsplit("/", 1)[1]
    with cli.database() as session:
        stored = session.exec(select(SignInToken)).one()
        assert token not in stored.token_hash
        assert stored.expires_at - stored.created_at == timedelta(minutes=15)
    site = Site.open(load_settings(cli.site, env={}, overrides={"database.url": cli.db_url}))
    try:
        with site.transaction() as session:
            assert signin.consume(session, token, now=utcnow()).email == "ada@example.org"
        with site.transaction() as session, pytest.raises(BadToken):
            signin.consume(session, token, now=utcnow())
    finally:
        site.close()
    assert "no user 'nobody@example.org'" in one_line_error(cli, "users", "login-link", "nobody@example.org")
    with cli.database() as session:
        kinds = [e.kind for e in session.exec(select(Event).order_by(col(Event.id)))]
    assert kinds[-2:] == ["sign-in-link", "sign-in"]


def test_password_is_stored_as_an_argon2_hash_and_can_be_cleared(cli: Cli) -> None:
    """`users password` asks twice, keeps only an argon2id hash; too short is refused; --clear removes it."""
    cli("users", "add", "ada@example.org", "--role", "admin")
    assert "too short" in one_line_error_input(cli, "short\nshort\n")
    secret = "correct horse battery staple"
    cli("users", "password", "ada@example.org", input=f"{secret}\n{secret}\n")
    with cli.database() as session:
        stored = session.exec(select(User)).one().password_hash or ""
    assert stored.startswith("$argon2id$")
    assert secret not in stored
    assert listed(cli)["ada@example.org"]["password"] is True
    cli("users", "password", "ada@example.org", "--clear")
    assert listed(cli)["ada@example.org"]["password"] is False


def one_line_error_input(cli: Cli, typed: str) -> str:
    result = cli("users", "password", "ada@example.org", input=typed, ok=False)
    assert result.exit_code != 0
    return result.stderr.strip().splitlines()[-1]
