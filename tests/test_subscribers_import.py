"""`newsletter subscribers import GROUP FILE`: real-world CSV in, one report line out.

Every test runs the command in-process against a copy of the example site, on a
SQLite file and (when configured) on PostgreSQL, and checks the database itself.
"""

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlmodel import select

from newsletter.audience.subscribers import import_csv
from newsletter.core.models import Event, Group, Membership, MembershipStatus, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from tests.conftest import CORPORA, Cli

CSV_CORPUS = CORPORA / "addresses" / "csv"
NO_CORPUS = f"CSV fixtures not found at {CSV_CORPUS} (tests.conftest.CORPORA / 'addresses/csv')"
ACTOR = f"cli:{getpass.getuser()}"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    """Write a file byte for byte (no newline translation) and return its path."""
    path = folder / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def run_import(cli: Cli, group: str, path: Path, *flags: str, ok: bool = True) -> Result:
    return cli("subscribers", "import", group, str(path), *flags, ok=ok)


def report_of(cli: Cli, group: str, path: Path, *flags: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(run_import(cli, group, path, "--json", *flags).stdout)
    return report


def snapshot(cli: Cli) -> dict[str, list[dict[str, Any]]]:
    """Every subscriber, membership and event row, to compare before and after."""
    with cli.database() as db:
        return {
            model.__name__: sorted(
                (row.model_dump() for row in db.exec(select(model))), key=lambda row: row["id"]
            )
            for model in (Subscriber, Membership, Event)
        }


def set_status(cli: Cli, group: str, email: str, status: MembershipStatus) -> None:
    """Change a membership directly in the database, as bounce processing would."""
    with cli.database() as db:
        membership = db.exec(
            select(Membership)
            .join(Subscriber, Membership.subscriber_id == Subscriber.id)  # type: ignore[arg-type]
            .join(Group, Membership.group_id == Group.id)  # type: ignore[arg-type]
            .where(Subscriber.email == email, Group.slug == group)
        ).one()
        membership.status = status
        db.add(membership)
        db.commit()


def assert_one_line_error(result: Result, *needles: str, exit_code: int = 2) -> str:
    """The command failed with one line on stderr holding every needle, and no traceback."""
    assert result.exit_code == exit_code, f"exit {result.exit_code}: {result.output}"
    error = result.stderr.strip()
    assert error, "the error must be on stderr"
    assert "\n" not in error, f"the error must be one line: {error!r}"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in error, f"{needle!r} not in {error!r}"
    return error


# --- Formats people really save ---


def test_comma_file_adds_every_row_with_name_and_language(cli: Cli, tmp_path: Path) -> None:
    """A plain comma-separated file adds each row with its name and normalised language."""
    path = write(
        tmp_path,
        "uk.csv",
        "email,name,language\n"
        "jane@example.org,Jane Doe,en\n"
        "raj@example.org,Raj Patel,EN\n"
        "owen@example.org,,\n",
    )
    result = run_import(cli, "uk", path)
    assert result.stdout.splitlines()[0] == "added 3, updated 0, unchanged 0, rejected 0"
    found = cli.members("uk")
    assert sorted(found) == ["jane@example.org", "owen@example.org", "raj@example.org"]
    assert found["jane@example.org"]["name"] == "Jane Doe"
    assert found["raj@example.org"]["language"] == "en"
    assert found["owen@example.org"]["name"] is None
    assert {m["status"] for m in found.values()} == {"active"}


def test_semicolon_file_with_quoted_fields(cli: Cli, tmp_path: Path) -> None:
    """A semicolon file (Excel in a German locale) keeps quoted semicolons, commas and doubled quotes."""
    path = write(
        tmp_path,
        "dach.csv",
        'email;name;language\n"juergen@example.org";"Müller; Jürgen, ""JM""";de\n'
        "lena@example.org;Lena;de-AT\n",
    )
    assert run_import(cli, "dach", path).stdout.startswith("added 2, updated 0, unchanged 0, rejected 0\n")
    found = cli.members("dach")
    assert found["juergen@example.org"]["name"] == 'Müller; Jürgen, "JM"'
    assert found["lena@example.org"]["language"] == "de-AT"


def test_comma_file_with_quoted_commas_and_doubled_quotes(cli: Cli, tmp_path: Path) -> None:
    """Quoted comma-file fields keep their commas and turn doubled quotes into one."""
    path = write(
        tmp_path,
        "fr.csv",
        'email,name,language\nmarie@example.org,"Dupont, Marie ""la Patente""",fr\n',
    )
    run_import(cli, "fr", path)
    assert cli.members("fr")["marie@example.org"]["name"] == 'Dupont, Marie "la Patente"'


def test_bom_crlf_and_blank_lines(cli: Cli, tmp_path: Path) -> None:
    """A UTF-8 BOM, CRLF line ends and blank lines anywhere are read, with true line numbers."""
    content = (
        "\ufeff\r\n"  # line 1: blank, after the byte-order mark
        "\r\n"  # line 2
        "Email;Name\r\n"  # line 3: the header
        "\r\n"  # line 4
        "anna@example.net;Anna Keller\r\n"  # line 5
        "\r\n"  # line 6
        "   \r\n"  # line 7: only spaces
        "not an address;Nobody\r\n"  # line 8
        "\r\n"
    )
    result = run_import(cli, "dach", write(tmp_path, "excel.csv", content))
    lines = result.stdout.splitlines()
    assert lines[0] == "added 1, updated 0, unchanged 0, rejected 1"
    assert lines[1] == "rejected:"
    assert lines[2].startswith("  line 8: 'not an address': ")
    assert cli.members("dach")["anna@example.net"]["name"] == "Anna Keller"


def test_bom_on_the_header_line(cli: Cli, tmp_path: Path) -> None:
    """A BOM right before the header (what Excel's 'CSV UTF-8' writes) does not hide the email column."""
    path = write(tmp_path, "bom.csv", "\ufeffemail,name\r\nluca@example.net,Luca Bianchi\r\n")
    assert run_import(cli, "cepiug", path).stdout.startswith("added 1, updated 0, unchanged 0, rejected 0")
    assert cli.members("cepiug")["luca@example.net"]["name"] == "Luca Bianchi"


def test_header_aliases_and_extra_columns_are_ignored(cli: Cli, tmp_path: Path) -> None:
    """Headers like 'E-Mail Address' and 'Full Name' are understood; unknown columns are ignored and named."""
    path = write(
        tmp_path,
        "export.csv",
        "Company;E-Mail Address;Full Name;Lang;Status\n"
        "ACME;fiona@example.net;Fiona MacLeod;en-GB;unsubscribed\n",
    )
    result = run_import(cli, "uk", path)
    assert result.stdout.splitlines() == [
        "added 1, updated 0, unchanged 0, rejected 0",
        "ignored columns: Company, Status",
    ]
    member = cli.members("uk")["fiona@example.net"]
    assert (member["name"], member["language"], member["status"]) == ("Fiona MacLeod", "en-GB", "active")


# --- Files that cannot be used at all ---


def test_header_without_email_column_is_one_line_error(cli: Cli, tmp_path: Path) -> None:
    """A header with no email column fails with one line naming file and line, and changes nothing."""
    cli("subscribers", "add", "uk", "jane@example.org")
    before = snapshot(cli)
    path = write(tmp_path, "names.csv", "\nname,language\nJane,en\n")
    result = run_import(cli, "uk", path, ok=False)
    assert_one_line_error(result, f"{path}:2:", "no 'email' column", "'name'")
    assert result.stdout == ""
    assert snapshot(cli) == before


def test_undecodable_bytes_name_file_and_line_and_change_nothing(cli: Cli, tmp_path: Path) -> None:
    """A Latin-1 file fails with one line naming file and line of the bad byte; the database is untouched."""
    cli("subscribers", "add", "fr", "veille@example.net")
    before = snapshot(cli)
    content = "email,name\r\nmarie@example.org,Marie\r\nhelene@example.org,Hélène\r\n".encode("latin-1")
    path = write(tmp_path, "latin1.csv", content)
    result = run_import(cli, "fr", path, ok=False)
    assert_one_line_error(result, f"{path}:3:", "0xe9", "UTF-8")
    assert snapshot(cli) == before
    assert sorted(cli.members("fr")) == ["veille@example.net"]


def test_missing_file_is_one_line_error(cli: Cli, tmp_path: Path) -> None:
    """A file that does not exist gives one line naming it and a non-zero exit."""
    path = tmp_path / "nowhere" / "subscribers.csv"
    assert_one_line_error(run_import(cli, "uk", path, ok=False), str(path))


def test_empty_file_is_one_line_error(cli: Cli, tmp_path: Path) -> None:
    """A file with nothing but blank lines is refused with one line."""
    path = write(tmp_path, "empty.csv", "\n\r\n  \n")
    assert_one_line_error(run_import(cli, "uk", path, ok=False), str(path), "empty")


# --- Duplicates ---


def test_duplicates_inside_the_file_are_merged_and_reported(cli: Cli, tmp_path: Path) -> None:
    """Rows naming the same mailbox become one member, and each repeat is reported with its line."""
    path = write(
        tmp_path,
        "dups.csv",
        "email,name,language\n"
        "jane@example.org,,\n"  # line 2
        "raj@example.org,Raj,en\n"  # line 3
        "JANE@Example.ORG,Jane Doe,\n"  # line 4: same mailbox as line 2, adds the name
        "jane@example.org,Other Name,fr\n",  # line 5: first name wins, language filled in
    )
    result = run_import(cli, "uk", path)
    assert result.stdout.splitlines() == [
        "added 2, updated 0, unchanged 0, rejected 0",
        "merged duplicate rows:",
        "  line 4: 'JANE@Example.ORG': same address as line 2",
        "  line 5: 'jane@example.org': same address as line 2",
    ]
    found = cli.members("uk")
    assert sorted(found) == ["jane@example.org", "raj@example.org"]
    assert (found["jane@example.org"]["name"], found["jane@example.org"]["language"]) == ("Jane Doe", "fr")


def test_duplicates_against_the_database_differing_in_case_are_merged(cli: Cli, tmp_path: Path) -> None:
    """An address already stored under another spelling is the same person, in this group and in others."""
    cli("subscribers", "add", "uk", "Jane.Doe@example.org", "--name", "Jane Doe")
    path = write(tmp_path, "upper.csv", "email,name\nJANE.DOE@EXAMPLE.ORG,Jane Doe\n")

    assert run_import(cli, "uk", path).stdout.splitlines()[0] == "added 0, updated 0, unchanged 1, rejected 0"
    assert (
        run_import(cli, "cepiug", path).stdout.splitlines()[0]
        == "added 1, updated 0, unchanged 0, rejected 0"
    )

    with cli.database() as db:
        people = list(db.exec(select(Subscriber)))
    assert [p.email for p in people] == ["Jane.Doe@example.org"], "one subscriber, first spelling kept"
    assert list(cli.members("cepiug")) == ["Jane.Doe@example.org"]


# --- The report ---


def test_report_line_and_rejected_rows_are_exact(cli: Cli, tmp_path: Path) -> None:
    """The summary line counts every outcome and each rejected row shows line, address and reason."""
    first = write(tmp_path, "first.csv", "email,name\nkeep@example.org,Keep\nrename@example.org,Old\n")
    run_import(cli, "uk", first)
    second = write(
        tmp_path,
        "second.csv",
        "email,name\n"
        "keep@example.org,Keep\n"  # line 2: unchanged
        "no-at-sign,X\n"  # line 3: rejected
        "rename@example.org,New Name\n"  # line 4: updated
        ",Nameless\n"  # line 5: rejected, no address
        "new@example.org,\n"  # line 6: added
        "me@[127.0.0.1],IP\n",  # line 7: rejected by policy
    )
    lines = run_import(cli, "uk", second).stdout.splitlines()
    assert lines[0] == "added 1, updated 1, unchanged 1, rejected 3"
    assert lines[1:5] == [
        "rejected:",
        "  line 3: 'no-at-sign': An email address must have an @-sign.",
        "  line 5: '': the address is empty",
        "  line 7: 'me@[127.0.0.1]': A bracketed IP address after the @-sign is not allowed here.",
    ]
    assert len(lines) == 5


def test_json_report_holds_the_same_data(cli: Cli, tmp_path: Path) -> None:
    """--json reports the same counts, rejected rows, duplicates and ignored columns as the text."""
    cli("subscribers", "add", "uk", "old@example.org", "--name", "Old")
    content = (
        "email,name,notes\n"
        "old@example.org,Renamed,x\n"  # line 2: updated
        "bad@,B,\n"  # line 3: rejected
        "new@example.org,New,\n"  # line 4: added
        "NEW@example.org,,\n"  # line 5: duplicate of line 4
    )
    report = report_of(cli, "uk", write(tmp_path, "a.csv", content), "--dry-run")
    text = run_import(cli, "uk", write(tmp_path, "a.csv", content)).stdout.splitlines()

    assert (report["added"], report["updated"], report["unchanged"]) == (1, 1, 0)
    assert [(n["line"], n["email"]) for n in report["rejected"]] == [(3, "bad@")]
    assert report["rejected"][0]["reason"]
    assert report["duplicates"] == [
        {"line": 5, "email": "NEW@example.org", "reason": "same address as line 4"}
    ]
    assert report["ignored_columns"] == ["notes"]
    assert report["group"] == "uk"
    assert report["file"].endswith("a.csv")

    assert text[0] == "added 1, updated 1, unchanged 0, rejected 1"
    assert text[1:3] == ["rejected:", f"  line 3: 'bad@': {report['rejected'][0]['reason']}"]
    assert text[3:5] == ["merged duplicate rows:", "  line 5: 'NEW@example.org': same address as line 4"]
    assert text[5] == "ignored columns: notes"


def test_multiline_quoted_field_keeps_later_line_numbers_true(cli: Cli, tmp_path: Path) -> None:
    """A quoted name spanning three lines does not shift the line numbers of the rows after it."""
    content = (
        "email,name,language\r\n"  # line 1
        'anna@example.net,"Anna\r\nKeller\nPhD",de\r\n'  # lines 2-4
        "not-an-address,X,de\r\n"  # line 5
        '"lena@example.net","Lena, ""LH""\rHofer",de\r\n'  # lines 6-7 (a lone CR ends a line too)
        "@missing-local,,\r\n"  # line 8
    )
    report = report_of(cli, "dach", write(tmp_path, "multi.csv", content))
    assert [(n["line"], n["email"]) for n in report["rejected"]] == [
        (5, "not-an-address"),
        (8, "@missing-local"),
    ]
    found = cli.members("dach")
    # A name goes into a To: header, so its line breaks become spaces.
    assert found["anna@example.net"]["name"] == "Anna Keller PhD"
    assert found["lena@example.net"]["name"] == 'Lena, "LH" Hofer'


def test_unusual_line_separators_inside_a_field_are_data(cli: Cli, tmp_path: Path) -> None:
    """U+2028, U+0085 and a form feed in a quoted field do not end the line or shift later line numbers."""
    content = 'email,name\n"a@example.org","One\u2028Two\x85Three\x0cFour"\nbroken,X\n'
    report = report_of(cli, "uk", write(tmp_path, "separators.csv", content))
    assert [(n["line"], n["email"]) for n in report["rejected"]] == [(3, "broken")]
    assert cli.members("uk")["a@example.org"]["name"] == "One Two Three Four"


def test_control_characters_in_names_are_dropped_on_every_backend(cli: Cli, tmp_path: Path) -> None:
    """A NUL or BEL in a name (PostgreSQL refuses NUL) is dropped and tabs become spaces, on both backends."""
    content = 'email,name\nnul@example.org,"Ann\x00a\tB\x07eth  Smith"\ncontrol@example.org,"\x00\x01"\n'
    result = run_import(cli, "uk", write(tmp_path, "control.csv", content))
    assert result.stdout.splitlines()[0] == "added 2, updated 0, unchanged 0, rejected 0"
    found = cli.members("uk")
    assert found["nul@example.org"]["name"] == "Anna Beth Smith"
    assert found["control@example.org"]["name"] is None, "a name of control characters only is no name"
    assert run_import(cli, "uk", tmp_path / "control.csv").stdout.startswith(
        "added 0, updated 0, unchanged 2"
    )


# --- Idempotence and updates ---


def test_reimporting_the_same_file_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    """A second import of the same file reports everything unchanged and writes no row at all."""
    path = write(
        tmp_path,
        "uk.csv",
        "email,name,language\njane@example.org,Jane Doe,EN\nraj@example.org,,\nbad,,\nJANE@example.org,,\n",
    )
    assert run_import(cli, "uk", path).stdout.splitlines()[0] == "added 2, updated 0, unchanged 0, rejected 1"
    before = snapshot(cli)
    assert len(before["Event"]) == 2

    second = run_import(cli, "uk", path).stdout.splitlines()
    assert second[0] == "added 0, updated 0, unchanged 2, rejected 1"
    assert snapshot(cli) == before, "re-importing must not touch a single row (not even updated_at)"


def test_name_or_language_change_counts_as_updated(cli: Cli, tmp_path: Path) -> None:
    """A changed name or language updates the person and writes an update event naming the fields."""
    run_import(
        cli,
        "cepiug",
        write(
            tmp_path,
            "v1.csv",
            "email,name,language\na@example.org,Ann,en\nb@example.org,Bob,en\nc@example.org,Cy,en\n",
        ),
    )
    result = run_import(
        cli,
        "cepiug",
        write(
            tmp_path,
            "v2.csv",
            "email,name,language\na@example.org,Ann Smith,en\nb@example.org,Bob,fr\nc@example.org,,\n",
        ),
    )
    assert result.stdout.splitlines()[0] == "added 0, updated 2, unchanged 1, rejected 0"
    found = cli.members("cepiug")
    assert (found["a@example.org"]["name"], found["b@example.org"]["language"]) == ("Ann Smith", "fr")
    assert (found["c@example.org"]["name"], found["c@example.org"]["language"]) == ("Cy", "en"), (
        "an empty cell must not erase what is known"
    )
    updates = [e for e in cli.events() if e.kind == "update"]
    assert sorted(json.loads(e.detail)["fields"][0] for e in updates) == ["language", "name"]
    assert {e.source for e in updates} == {"import:v2.csv"}


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_ended_membership_stays_ended_after_reimport(cli: Cli, tmp_path: Path, status: str) -> None:
    """An unsubscribed, bounced or complained member stays so, untouched, whatever a later import says."""
    path = write(
        tmp_path, "uk.csv", "email,name,language\njane@example.org,Jane,en\nraj@example.org,Raj,en\n"
    )
    run_import(cli, "uk", path)
    if status == "unsubscribed":
        cli("subscribers", "remove", "uk", "jane@example.org")
    else:
        set_status(cli, "uk", "jane@example.org", MembershipStatus(status))
    before = snapshot(cli)

    renamed = write(
        tmp_path,
        "again.csv",
        "email,name,language\nJANE@example.org,Jane Renamed,fr\nraj@example.org,Raj,en\n",
    )
    lines = run_import(cli, "uk", renamed).stdout.splitlines()
    assert lines == [
        "added 0, updated 0, unchanged 2, rejected 0",
        "left as they were:",
        f"  line 2: 'JANE@example.org': left {status}: only a new opt-in re-subscribes",
    ]
    assert snapshot(cli) == before
    jane = cli.members("uk")["jane@example.org"]
    assert (jane["status"], jane["name"]) == (status, "Jane")
    assert cli.members("uk")["raj@example.org"]["status"] == "active"


def test_dry_run_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    """--dry-run reports what would happen and leaves every row as it was."""
    cli("subscribers", "add", "uk", "old@example.org", "--name", "Old")
    before = snapshot(cli)
    path = write(tmp_path, "dry.csv", "email,name\nold@example.org,Renamed\nnew@example.org,New\nbad,\n")
    assert run_import(cli, "uk", path, "--dry-run").stdout.splitlines()[0] == (
        "dry run, would have: added 1, updated 1, unchanged 0, rejected 1"
    )
    assert report_of(cli, "uk", path, "--dry-run")["dry_run"] is True
    assert snapshot(cli) == before
    assert list(cli.members("uk")) == ["old@example.org"]


MIXED = (
    "email,name,language\n"
    "new@example.org,New,de\n"  # added
    "old@example.org,Renamed,\n"  # updated: name
    "same@example.org,Same,\n"  # unchanged
    "waiting@example.org,,\n"  # updated: pending becomes active
    "gone@example.org,,\n"  # kept: unsubscribed
    "NEW@example.org,,\n"  # merged duplicate
    "bad,,\n"  # rejected
)


def mixed_site(cli: Cli) -> None:
    """Members in every state the import treats differently."""
    cli("subscribers", "add", "uk", "old@example.org", "--name", "Old")
    cli("subscribers", "add", "uk", "same@example.org", "--name", "Same")
    cli("subscribers", "add", "uk", "waiting@example.org")
    cli("subscribers", "add", "uk", "gone@example.org")
    cli("subscribers", "remove", "uk", "gone@example.org")
    set_status(cli, "uk", "waiting@example.org", MembershipStatus.PENDING)


def test_dry_run_reports_what_the_import_then_does(cli: Cli, tmp_path: Path) -> None:
    """The dry run's report (planned without writing) equals the real import's, row for row."""
    mixed_site(cli)
    path = write(tmp_path, "mixed.csv", MIXED)
    planned = report_of(cli, "uk", path, "--dry-run")
    done = report_of(cli, "uk", path)
    assert (planned.pop("dry_run"), done.pop("dry_run")) == (True, False)
    assert planned == done
    assert (done["added"], done["updated"], done["unchanged"], len(done["rejected"])) == (1, 2, 2, 1)
    assert cli.members("uk")["waiting@example.org"]["status"] == "active"


def test_the_library_dry_run_writes_nothing_even_when_committed(site_dir: Path, tmp_path: Path) -> None:
    """import_csv(dry_run=True) in a transaction that commits leaves the SQLite file byte for byte."""
    database = tmp_path / "dry.db"
    cli = Cli(site_dir, f"sqlite:///{database}")
    mixed_site(cli)
    path = write(tmp_path, "mixed.csv", MIXED)
    settings = load_settings(site_dir, overrides={"database.url": cli.db_url})
    site = Site.open(settings)
    try:
        with site.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        before, events = database.read_bytes(), len(cli.events())
        with site.transaction() as session:
            report = import_csv(session, settings, "uk", path, actor="test", dry_run=True)
            assert not session.new
            assert not session.dirty
            assert not session.deleted
        # Whatever a commit wrote would now be copied from the write-ahead log into the file.
        with site.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        assert database.read_bytes() == before
    finally:
        site.close()
    assert (report.added, report.updated, report.unchanged) == (1, 2, 2)
    assert len(cli.events()) == events
    assert "new@example.org" not in cli.members("uk")


def test_dry_run_on_the_command_line_leaves_the_sqlite_file_as_it_was(site_dir: Path, tmp_path: Path) -> None:
    """`subscribers import --dry-run` against a SQLite file: the file is unchanged, no event is written."""
    database = tmp_path / "cli.db"
    cli = Cli(site_dir, f"sqlite:///{database}")
    mixed_site(cli)
    events = len(cli.events())
    before = database.read_bytes()
    path = write(tmp_path, "mixed.csv", MIXED)
    assert run_import(cli, "uk", path, "--dry-run").stdout.startswith("dry run, would have: added 1,")
    assert database.read_bytes() == before
    assert len(cli.events()) == events


def test_strict_with_a_rejected_row_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    """--strict refuses the whole file when one row is bad: one error line, report on stdout, no change."""
    cli("subscribers", "add", "uk", "old@example.org")
    before = snapshot(cli)
    path = write(tmp_path, "strict.csv", "email\nnew@example.org\nbad\n")
    result = run_import(cli, "uk", path, "--strict", ok=False)
    assert_one_line_error(result, "1 row(s) rejected", "--strict", "nothing was imported")
    assert result.stdout.splitlines()[:3] == [
        "added 1, updated 0, unchanged 0, rejected 1",
        "rejected:",
        "  line 3: 'bad': An email address must have an @-sign.",
    ]
    assert snapshot(cli) == before


def test_strict_without_rejected_rows_imports(cli: Cli, tmp_path: Path) -> None:
    """--strict on a clean file imports it like a normal run."""
    path = write(tmp_path, "clean.csv", "email\nnew@example.org\n")
    assert run_import(cli, "uk", path, "--strict").stdout.startswith(
        "added 1, updated 0, unchanged 0, rejected 0"
    )
    assert list(cli.members("uk")) == ["new@example.org"]


# --- The audit log ---


def test_every_change_writes_an_event_with_actor_and_source(cli: Cli, tmp_path: Path) -> None:
    """Each added or updated person gets one event naming who did it, through which file, and where."""
    run_import(
        cli, "fr", write(tmp_path, "fr-1.csv", "email,name\nmarie@example.org,Marie\nveille@example.net,\n")
    )
    run_import(
        cli,
        "fr",
        write(tmp_path, "fr-2.csv", "email,name\nmarie@example.org,Marie Dupont\nveille@example.net,\n"),
    )
    with cli.database() as db:
        people = {s.email: s.id for s in db.exec(select(Subscriber))}
        fr = db.exec(select(Group).where(Group.slug == "fr")).one().id
    logged = [(e.kind, e.subscriber_id, e.group_id, e.actor, e.source) for e in cli.events()]
    assert logged == [
        ("subscribe", people["marie@example.org"], fr, ACTOR, "import:fr-1.csv"),
        ("subscribe", people["veille@example.net"], fr, ACTOR, "import:fr-1.csv"),
        ("update", people["marie@example.org"], fr, ACTOR, "import:fr-2.csv"),
    ]
    assert all(e.at is not None and e.at.tzinfo is not None for e in cli.events()), "timestamps are aware UTC"


# --- Real fixtures from other newsletter products ---


@pytest.mark.skipif(not CSV_CORPUS.is_dir(), reason=NO_CORPUS)
def test_django_newsletter_semicolon_file(cli: Cli) -> None:
    """django-newsletter's addresses.csv (semicolons, header name;email) adds its 2 people (expected.json)."""
    result = run_import(cli, "cepiug", CSV_CORPUS / "django-newsletter_addresses.csv")
    assert result.stdout.splitlines() == ["added 2, updated 0, unchanged 0, rejected 0"]
    found = cli.members("cepiug")
    assert {email: m["name"] for email, m in found.items()} == {
        "jill@example.org": "Jill Martin",
        "john@example.org": "John Smith",
    }


@pytest.mark.skipif(not CSV_CORPUS.is_dir(), reason=NO_CORPUS)
def test_django_newsletter_file_with_one_person_already_subscribed(cli: Cli) -> None:
    """With john@example.org already subscribed, the django file adds 1 and leaves John as he was."""
    cli("subscribers", "add", "cepiug", "john@example.org", "--name", "John Smith")
    result = run_import(cli, "cepiug", CSV_CORPUS / "django-newsletter_addresses.csv")
    assert result.stdout.splitlines() == ["added 1, updated 0, unchanged 1, rejected 0"]
    assert sorted(cli.members("cepiug")) == ["jill@example.org", "john@example.org"]


@pytest.mark.skipif(not CSV_CORPUS.is_dir(), reason=NO_CORPUS)
def test_django_newsletter_duplicates_file(cli: Cli) -> None:
    """django-newsletter's duplicates file gives 2 subscriptions and reports its 2 repeated rows."""
    result = run_import(cli, "cepiug", CSV_CORPUS / "django-newsletter_addresses_duplicates.csv")
    assert result.stdout.splitlines() == [
        "added 2, updated 0, unchanged 0, rejected 0",
        "merged duplicate rows:",
        "  line 4: 'john@example.org': same address as line 2",
        "  line 5: 'jill@example.org': same address as line 3",
    ]
    assert sorted(cli.members("cepiug")) == ["jill@example.org", "john@example.org"]


@pytest.mark.skipif(not CSV_CORPUS.is_dir(), reason=NO_CORPUS)
def test_listmonk_file_gives_100_and_reimport_keeps_100(cli: Cli) -> None:
    """listmonk's subs.csv (CRLF, a quoted JSON column) gives 100 people, and still 100 after a re-import.

    It is recognised as listmonk's layout: its attributes are read, and those that fill no
    custom field of the site are named as ignored.
    """
    path = CSV_CORPUS / "listmonk_subs.csv"
    ignored = "ignored columns: attributes.age, attributes.city, attributes.clientId"
    first = run_import(cli, "uk", path).stdout.splitlines()
    assert first == ["added 100, updated 0, unchanged 0, rejected 0", ignored]
    found = cli.members("uk")
    assert len(found) == 100
    assert sorted(found) == sorted(f"user{n}@mail.com" for n in range(100))
    assert found["user42@mail.com"]["name"] == "First42 Last42"
    before = snapshot(cli)

    again = run_import(cli, "uk", path).stdout.splitlines()
    assert again == ["added 0, updated 0, unchanged 100, rejected 0", ignored]
    assert len(cli.members("uk")) == 100
    assert snapshot(cli) == before
