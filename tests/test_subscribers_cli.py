"""`newsletter subscribers add|remove|list|export|forget`, run in-process against real databases.

Every failure must be one line on stderr with a non-zero exit, and never a traceback.
"""

import csv
import getpass
import io
import json
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import MetaData, create_engine
from sqlmodel import select

from newsletter.core.models import Delivery, Edition, Membership, MembershipStatus, Subscriber
from tests.conftest import Cli

ACTOR = f"cli:{getpass.getuser()}"
KNOWN_GROUPS = "known: cepiug, dach, fr, uk"


def subscriber_id(cli: Cli, email: str) -> int:
    with cli.database() as db:
        found = db.exec(select(Subscriber).where(Subscriber.email == email)).one().id
    assert found is not None
    return found


def set_status(cli: Cli, group: str, email: str, status: MembershipStatus) -> None:
    """Change a membership directly in the database, as bounce processing would."""
    with cli.database() as db:
        membership = db.exec(
            select(Membership).where(
                Membership.subscriber_id == subscriber_id(cli, email),
                Membership.group_id == cli.group_id(group),
            )
        ).one()
        membership.status = status
        db.add(membership)
        db.commit()


def dump(cli: Cli) -> str:
    """The whole database as text: SQLite's own SQL dump, or every row of every PostgreSQL table."""
    engine = create_engine(cli.db_url)
    try:
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()
            try:
                return "\n".join(raw.driver_connection.iterdump())  # type: ignore[union-attr]
            finally:
                raw.close()
        metadata = MetaData()
        metadata.reflect(engine)
        assert "subscriber" in metadata.tables, "the dump must see the test's schema"
        with engine.connect() as connection:
            return "\n".join(
                f"{table.name}: {tuple(row)!r}"
                for table in metadata.sorted_tables
                for row in connection.execute(table.select())
            )
    finally:
        engine.dispose()


def assert_one_line_error(result: Result, *needles: str, exit_code: int) -> str:
    """The command failed with one line on stderr holding every needle, and no traceback."""
    assert result.exit_code == exit_code, f"exit {result.exit_code}: {result.output}"
    error = result.stderr.strip()
    assert error.startswith("error: "), f"the error must be on stderr: {result.output!r}"
    assert "\n" not in error, f"the error must be one line: {error!r}"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in error, f"{needle!r} not in {error!r}"
    return error


# --- add ---


def test_add_makes_an_active_member_and_logs_it(cli: Cli) -> None:
    """`add` makes the address an active member from source 'cli' and writes one subscribe event."""
    result = cli("subscribers", "add", "uk", "jane@example.org", "--language", "EN-gb")
    assert result.stdout == "added: jane@example.org in uk\n"
    member = cli.members("uk")["jane@example.org"]
    assert (member["status"], member["source"], member["language"]) == ("active", "cli", "en-GB")
    logged = [(e.kind, e.subscriber_id, e.group_id, e.actor, e.source) for e in cli.events()]
    assert logged == [("subscribe", subscriber_id(cli, "jane@example.org"), cli.group_id("uk"), ACTOR, "cli")]


def test_add_accepts_name_and_address_form(cli: Cli) -> None:
    """`add GROUP "Name <addr>"` stores the normalised address and keeps the name; --name wins over it."""
    cli("subscribers", "add", "uk", "Jane Doe <Jane.Doe@Example.ORG>")
    cli("subscribers", "add", "uk", '"Patel, Raj" <raj@EXAMPLE.org>', "--name", "Raj Patel")
    found = cli.members("uk")
    assert sorted(found) == ["Jane.Doe@example.org", "raj@example.org"]
    assert found["Jane.Doe@example.org"]["name"] == "Jane Doe"
    assert found["raj@example.org"]["name"] == "Raj Patel"


def test_add_again_is_unchanged_and_a_new_name_is_an_update(cli: Cli) -> None:
    """Adding a member twice changes nothing; adding with a new name (any spelling) updates them."""
    cli("subscribers", "add", "uk", "jane@example.org", "--name", "Jane")
    assert cli("subscribers", "add", "uk", "jane@example.org").stdout.startswith("unchanged: ")
    assert len(cli.events()) == 1
    assert cli("subscribers", "add", "uk", "JANE@example.org", "--name", "Jane Doe").stdout.startswith(
        "updated: "
    )
    assert cli.members("uk")["jane@example.org"]["name"] == "Jane Doe"
    assert [e.kind for e in cli.events()] == ["subscribe", "update"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("not-an-address", "An email address must have an @-sign."),
        ("me@[127.0.0.1]", "A bracketed IP address after the @-sign is not allowed here."),
        ('"quoted"@example.org', "Quoting the part before the @-sign is not allowed here."),
        ("someone@site.test", "special-use or reserved name"),
    ],
)
def test_add_invalid_address_is_one_line_exit_2(cli: Cli, address: str, reason: str) -> None:
    """A refused address gives exit 2 and one line with the address and the reason; nothing is stored."""
    result = cli("subscribers", "add", "uk", address, ok=False)
    assert_one_line_error(result, repr(address), reason, exit_code=2)
    assert result.stdout == ""
    assert cli.members("uk") == {}
    with cli.database() as db:
        assert list(db.exec(select(Subscriber))) == []


def test_add_unknown_language_is_one_line_exit_2(cli: Cli) -> None:
    """An unknown --language is refused with one line, before anything is stored."""
    result = cli("subscribers", "add", "uk", "jane@example.org", "--language", "klingon-xx", ok=False)
    assert_one_line_error(result, "klingon-xx", exit_code=2)
    assert cli.members("uk") == {}


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_add_refuses_a_member_who_has_left(cli: Cli, status: str) -> None:
    """`add` does not bring back an unsubscribed, bounced or complained member: one line, nothing changed."""
    cli("subscribers", "add", "uk", "jane@example.org", "--name", "Jane")
    if status == "unsubscribed":
        cli("subscribers", "remove", "uk", "jane@example.org")
    else:
        set_status(cli, "uk", "jane@example.org", MembershipStatus(status))
    logged = len(cli.events())

    result = cli("subscribers", "add", "uk", "Jane@Example.org", "--name", "Jane Doe", ok=False)
    assert_one_line_error(result, "Jane@example.org is " + status, "opt-in", exit_code=1)
    member = cli.members("uk")["jane@example.org"]
    assert (member["status"], member["name"]) == (status, "Jane")
    assert len(cli.events()) == logged


# --- remove ---


def test_remove_unsubscribes_from_that_group_only(cli: Cli) -> None:
    """`remove` ends one membership, logs it, and leaves the person's other groups active."""
    for group in ("uk", "cepiug"):
        cli("subscribers", "add", group, "jane@example.org")
    cli("subscribers", "add", "uk", "raj@example.org")

    result = cli("subscribers", "remove", "uk", "JANE@example.org")
    assert result.stdout == "unsubscribed: JANE@example.org from uk\n"
    assert cli.members("uk")["jane@example.org"]["status"] == "unsubscribed"
    assert cli.members("uk")["raj@example.org"]["status"] == "active"
    assert cli.members("cepiug")["jane@example.org"]["status"] == "active"
    last = cli.events()[-1]
    assert (last.kind, last.subscriber_id, last.group_id, last.actor, last.source) == (
        "unsubscribe",
        subscriber_id(cli, "jane@example.org"),
        cli.group_id("uk"),
        ACTOR,
        "cli",
    )

    again = cli("subscribers", "remove", "uk", "jane@example.org")
    assert again.stdout == "already not active: jane@example.org from uk\n"
    assert cli.events()[-1].id == last.id, "a second remove logs nothing"


def test_remove_someone_unknown_or_not_a_member_is_one_line(cli: Cli) -> None:
    """Removing an unknown address, or someone from a group they are not in, gives one line and exit 1."""
    cli("subscribers", "add", "cepiug", "jane@example.org")
    assert_one_line_error(
        cli("subscribers", "remove", "uk", "nobody@example.org", ok=False), "nobody@example.org", exit_code=1
    )
    assert_one_line_error(
        cli("subscribers", "remove", "uk", "jane@example.org", ok=False), "not a member of uk", exit_code=1
    )
    assert cli.members("cepiug")["jane@example.org"]["status"] == "active"


# --- list ---


def test_list_filters_by_status(cli: Cli) -> None:
    """`list --status` shows only members in the given states, in address order; without it, everyone."""
    for email in ("carol@example.org", "alice@example.org", "bob@example.org"):
        cli("subscribers", "add", "uk", email)
    cli("subscribers", "remove", "uk", "bob@example.org")
    set_status(cli, "uk", "carol@example.org", MembershipStatus.BOUNCED)

    everyone = json.loads(cli("subscribers", "list", "uk", "--json").stdout)
    assert [(m["email"], m["status"]) for m in everyone] == [
        ("alice@example.org", "active"),
        ("bob@example.org", "unsubscribed"),
        ("carol@example.org", "bounced"),
    ]
    assert list(cli.members("uk", "--status", "active")) == ["alice@example.org"]
    ended = cli.members("uk", "--status", "unsubscribed", "--status", "bounced")
    assert list(ended) == ["bob@example.org", "carol@example.org"]
    assert cli.members("uk", "--status", "complained") == {}


def test_list_json_fields_and_table(cli: Cli) -> None:
    """`list --json` gives each member's fields; the table shows the same rows; an empty group says (none)."""
    cli("subscribers", "add", "dach", "Anna Keller <anna@example.net>", "--language", "de")
    (member,) = json.loads(cli("subscribers", "list", "dach", "--json").stdout)
    assert set(member) == {"email", "name", "language", "status", "source", "since", "fields", "bounce_score"}
    assert member["fields"] == {}
    assert member["bounce_score"] == 0
    assert (member["email"], member["name"], member["language"], member["status"], member["source"]) == (
        "anna@example.net",
        "Anna Keller",
        "de",
        "active",
        "cli",
    )
    assert member["since"].endswith("+00:00"), "times are shown in UTC"

    table = cli("subscribers", "list", "dach").stdout.splitlines()
    assert table[0].split() == ["email", "name", "language", "status", "source", "since"]
    assert table[1].split()[:6] == ["anna@example.net", "Anna", "Keller", "de", "active", "cli"]
    assert cli("subscribers", "list", "fr").stdout.strip() == "(none)"
    assert json.loads(cli("subscribers", "list", "fr", "--json").stdout) == []


def test_list_unknown_status_is_one_line(cli: Cli) -> None:
    """`list --status` with an unknown state is a usage error on one line."""
    result = cli("subscribers", "list", "uk", "--status", "gone", ok=False)
    assert_one_line_error(result, "gone", exit_code=2)


# --- export ---

PEOPLE = (
    "email,name,language\n"
    'juergen@example.org,"Müller, Jürgen ""JM""",de\n'
    "anna@example.net,Anna Keller,de-AT\n"
    "patentabteilung@example.org,,\n"
    "zoe@example.org,Zoë; O'Neil,fr\n"
)


def test_export_reimports_unchanged(cli: Cli, tmp_path: Path) -> None:
    """An export re-imported into its group changes nothing, and into another group gives the same people."""
    source = tmp_path / "people.csv"
    source.write_text(PEOPLE, encoding="utf-8")
    cli("subscribers", "import", "dach", str(source))
    exported = cli("subscribers", "export", "dach").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["email"] for r in rows] == [
        "anna@example.net",
        "juergen@example.org",
        "patentabteilung@example.org",
        "zoe@example.org",
    ]
    assert rows[1]["name"] == 'Müller, Jürgen "JM"'
    assert {r["status"] for r in rows} == {"active"}

    path = tmp_path / "export.csv"
    path.write_text(exported, encoding="utf-8")
    logged = len(cli.events())
    again = cli("subscribers", "import", "dach", str(path)).stdout.splitlines()
    assert again[0] == "added 0, updated 0, unchanged 4, rejected 0"
    assert len(cli.events()) == logged

    assert cli("subscribers", "import", "fr", str(path)).stdout.startswith("added 4, updated 0, unchanged 0")

    def people(group: str) -> list[tuple[str, str | None, str | None]]:
        return [(e, m["name"], m["language"]) for e, m in cli.members(group).items()]

    assert people("fr") == people("dach")


def test_export_defaults_to_active_members_and_all_includes_everyone(cli: Cli) -> None:
    """`export` writes only active members; `export --all` adds pending and ended ones with their status."""
    cli("subscribers", "add", "uk", "jane@example.org")
    cli("subscribers", "add", "uk", "raj@example.org")
    cli("subscribers", "remove", "uk", "raj@example.org")

    active = list(csv.DictReader(io.StringIO(cli("subscribers", "export", "uk").stdout)))
    assert [r["email"] for r in active] == ["jane@example.org"]
    everyone = list(csv.DictReader(io.StringIO(cli("subscribers", "export", "uk", "--all").stdout)))
    assert [(r["email"], r["status"]) for r in everyone] == [
        ("jane@example.org", "active"),
        ("raj@example.org", "unsubscribed"),
    ]


def test_export_output_file(cli: Cli, tmp_path: Path) -> None:
    """`export --output FILE` writes the same CSV to the file, says so on stderr, and prints nothing else."""
    cli("subscribers", "add", "fr", "Marie Dupont <marie@example.org>")
    cli("subscribers", "add", "fr", "veille@example.net")
    to_stdout = cli("subscribers", "export", "fr").stdout
    path = tmp_path / "out" / "fr.csv"
    path.parent.mkdir()
    result = cli("subscribers", "export", "fr", "--output", str(path))
    assert result.stdout == ""
    assert result.stderr.strip() == f"exported 2 member(s) of fr to {path}"
    assert path.read_text(encoding="utf-8") == to_stdout
    assert to_stdout.splitlines()[0] == "email,name,language,status,source,since"
    assert len(to_stdout.splitlines()) == 3


# --- forget ---


def test_forget_erases_the_person_everywhere_but_one_anonymous_line(cli: Cli) -> None:
    """`forget` deletes subscriber, memberships, deliveries and events, leaving one anonymous erase event."""
    cli("subscribers", "add", "uk", "Zelda Quibble <Zelda.Quibble@Example.org>", "--language", "en")
    cli("subscribers", "add", "cepiug", "zelda.quibble@example.org")
    cli("subscribers", "remove", "cepiug", "zelda.quibble@example.org")
    cli("subscribers", "add", "uk", "Raj Patel <raj@example.org>")
    zelda = subscriber_id(cli, "Zelda.Quibble@example.org")
    with cli.database() as db:
        edition = Edition(group_id=cli.group_id("uk"), period_key="2026-W47", subject="Weekly")
        db.add(edition)
        db.flush()
        assert edition.id is not None
        db.add(Delivery(edition_id=edition.id, subscriber_id=zelda))
        db.commit()
    assert "Zelda.Quibble" in dump(cli), "the dump must show the person before they are forgotten"
    raj_events = [e.id for e in cli.events() if e.subscriber_id == subscriber_id(cli, "raj@example.org")]

    result = cli("subscribers", "forget", "ZELDA.QUIBBLE@example.org", "--yes")
    assert result.stdout == (
        "erased ZELDA.QUIBBLE@example.org: 2 membership(s), 1 delivery record(s), 3 event(s)\n"
    )

    text = dump(cli).casefold()
    for trace in ("zelda.quibble@example.org", "zelda", "quibble"):
        assert trace not in text, f"{trace!r} is still in the database"
    with cli.database() as db:
        assert db.get(Subscriber, zelda) is None
        assert list(db.exec(select(Membership).where(Membership.subscriber_id == zelda))) == []
        assert list(db.exec(select(Delivery))) == []
    left = cli.events()
    erase = [e for e in left if e.kind == "erase"]
    assert len(erase) == 1
    (line,) = erase
    assert (line.subscriber_id, line.group_id, line.actor, line.source) == (None, None, ACTOR, "cli")
    assert json.loads(line.detail) == {"memberships": 2, "deliveries": 1, "events": 3}
    assert [e.id for e in left if e.kind != "erase"] == raj_events, "other people's events stay"
    assert list(cli.members("uk")) == ["raj@example.org"]


def test_forget_unknown_address_is_one_line(cli: Cli) -> None:
    """Forgetting an address nobody has gives one line, exit 1, and writes no event."""
    cli("subscribers", "add", "uk", "jane@example.org")
    result = cli("subscribers", "forget", "nobody@example.org", "--yes", ok=False)
    assert_one_line_error(result, "no subscriber 'nobody@example.org'", exit_code=1)
    assert [e.kind for e in cli.events()] == ["subscribe"]


def test_forget_asks_first_and_without_a_terminal_needs_yes(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No terminal and no --yes: refused; on a terminal, answering no erases nothing."""
    cli("subscribers", "add", "uk", "jane@example.org")
    refused = cli("subscribers", "forget", "jane@example.org", ok=False)
    assert_one_line_error(refused, "add --yes to confirm", exit_code=2)
    monkeypatch.setattr("newsletter.cli.subscribers._can_ask", lambda: True)
    declined = cli("subscribers", "forget", "jane@example.org", input="n\n", ok=False)
    assert declined.exit_code == 1
    assert "Erase jane@example.org and all their records?" in declined.stdout
    assert declined.stderr == "error: nothing erased: jane@example.org is kept\n"
    assert list(cli.members("uk")) == ["jane@example.org"]
    assert [e.kind for e in cli.events()] == ["subscribe"]
    erased = cli("subscribers", "forget", "jane@example.org", input="y\n")
    assert "erased jane@example.org" in erased.stdout
    assert cli.members("uk") == {}


# --- errors ---


@pytest.mark.parametrize(
    "command",
    [
        ("import", "nope", "{csv}"),
        ("add", "nope", "jane@example.org"),
        ("remove", "nope", "jane@example.org"),
        ("list", "nope"),
        ("list", "nope", "--json"),
        ("export", "nope"),
        ("export", "nope", "--output", "{out}"),
    ],
    ids=lambda command: "-".join(part for part in command if not part.startswith("{")),
)
def test_unknown_group_names_the_known_ones(cli: Cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    """Every subscribers command given an unknown group says so in one line that lists the known groups."""
    people = tmp_path / "people.csv"
    people.write_text("email\njane@example.org\n", encoding="utf-8")
    out = tmp_path / "export.csv"
    args = [part.format(csv=people, out=out) for part in command]
    cli("subscribers", "add", "uk", "jane@example.org")

    result = cli("subscribers", *args, ok=False)
    assert_one_line_error(result, "no group 'nope'", KNOWN_GROUPS, exit_code=1)
    assert result.stdout == ""
    assert not out.exists()
    assert list(cli.members("uk")) == ["jane@example.org"]


@pytest.mark.parametrize(
    "args",
    [
        ("add", "uk"),
        ("remove",),
        ("forget",),
        ("import", "uk"),
        ("list", "uk", "--frobnicate"),
        ("export", "uk", "--output"),
    ],
    ids=lambda args: "-".join(args),
)
def test_usage_mistakes_are_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    """Missing arguments and unknown options give one usage line and exit 2, never a traceback."""
    assert_one_line_error(cli("subscribers", *args, ok=False), exit_code=2)
