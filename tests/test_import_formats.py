"""Importing from other list managers: a listmonk export and Mailman 3 member lists keep their status.

The sample files in tests/samples/imports/ are written as those tools write them (listmonk's
export columns and its Go time stamps, CRLF; `mailman members` lines with display names),
with hostile rows mixed in: formulas, header injection in a name, broken JSON, duplicates
that differ by case, a line break inside an address, overlong lines.
"""

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from newsletter.audience.formats import detect
from newsletter.core.models import Subscriber
from tests.conftest import Cli
from tests.test_subscribers_import import assert_one_line_error, report_of, run_import, snapshot
from tests.workspace import EDITOR, Workspace, csrf_of, session_for

SAMPLES = Path(__file__).parent / "samples" / "imports"
LISTMONK = SAMPLES / "listmonk-subscribers.csv"
MAILMAN = SAMPLES / "mailman-members.txt"
ADDRESSES = SAMPLES / "mailman-addresses.txt"
FIELDS = """
[fields.organisation]
label = "Organisation"

[fields.country]
label = "Country"
type = "choice"
choices = ["DE", "FR", "GB"]
"""


@pytest.fixture
def site_dir(site_dir: Path) -> Path:
    """The example site with two custom fields, as a site moving from listmonk would declare them."""
    config = site_dir / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + FIELDS, encoding="utf-8")
    return site_dir


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {row["email"]: row["verdict"] for row in report["rows"]}


def notes(report: dict[str, Any], kind: str) -> dict[int, str]:
    return {note["line"]: note["reason"] for note in report[kind]}


def test_detect_tells_the_formats_apart() -> None:
    """The first line decides: listmonk's columns, a bare or named address, or our own header."""
    assert detect(LISTMONK.read_bytes()) == "listmonk"
    assert detect(b"email,name,attributes\r\na@example.org,A,{}\r\n") == "listmonk"
    assert detect(MAILMAN.read_bytes()) == "mailman"
    assert detect(ADDRESSES.read_bytes()) == "mailman"
    assert detect(b"\xef\xbb\xbfemail;name\r\na@example.org;A\r\n") == "csv"
    assert detect(b"name,notes\nA,B\n") == "csv"


def test_listmonk_export_keeps_status_and_attributes(cli: Cli, tmp_path: Path) -> None:
    """Enabled people become members with their attributes; blocklisted are recorded unsubscribed,
    disabled and unknown statuses are not imported; hostile rows are rejected or made harmless."""
    report = report_of(cli, "uk", LISTMONK)
    by_address = verdicts(report)
    assert by_address == {
        # ANNA.BERG@ (line 10) is blocklisted: the same mailbox's enabled row loses.
        "anna.berg@example.org": "suppressed",
        "Carlos.Mendes@example.com": "added",
        "spam.reporter@example.net": "suppressed",
        "formula.name@example.org": "added",
        "broken.attributes@example.org": "added",
        "anna.berg+news@example.org": "added",
        "zoe.unal@example.fr": "added",
    }
    assert (report["added"], report["suppressed"], report["unchanged"]) == (5, 2, 0)
    assert notes(report, "skipped") == {
        5: "disabled in listmonk; not imported",
        15: "listmonk status 'unsubscribed' is not known; not imported",
    }
    assert set(notes(report, "rejected")) == {6, 11}
    assert notes(report, "duplicates") == {10: "same address as line 2"}
    warnings = notes(report, "warnings")
    assert warnings[8] == "the attributes are not valid JSON; attributes ignored"
    assert warnings[9] == "the attributes are not a JSON object; attributes ignored"
    # listmonk's own columns are read, not reported as ignored.
    assert report["ignored_columns"] == []

    members = cli.members("uk")
    assert members["spam.reporter@example.net"]["status"] == "unsubscribed"
    assert members["anna.berg@example.org"]["status"] == "unsubscribed"
    assert "on.leave@example.org" not in members
    assert members["zoe.unal@example.fr"]["language"] == "fr"
    # The name's line break is folded, so it cannot add a header to a message.
    assert members["zoe.unal@example.fr"]["name"] == "Zoë Ünal Bcc: victim@example.org"
    with cli.database() as db:
        people = {s.email: s for s in db.exec(select(Subscriber))}
    assert people["Carlos.Mendes@example.com"].field_values == {"organisation": "Mendes IP"}
    assert people["zoe.unal@example.fr"].field_values == {"country": "FR"}
    # A formula stays text in the database and is neutralised again on the way out.
    assert people["formula.name@example.org"].name == "=cmd|' /C calc'!A0"
    exported = tmp_path / "out.csv"
    cli("subscribers", "export", "uk", "--output", str(exported))
    text = exported.read_text(encoding="utf-8")
    assert "'=cmd|' /C calc'!A0" in text
    assert "'@SUM(1+1)" in text

    # The same file again changes nothing; the blocklisted stay unsubscribed.
    again = report_of(cli, "uk", LISTMONK)
    assert (again["added"], again["updated"], again["suppressed"]) == (0, 0, 0)
    assert notes(again, "kept")[4] == "left unsubscribed: already not mailed"


def test_blocklisted_member_is_never_mailed_again(cli: Cli, tmp_path: Path) -> None:
    """An active member blocklisted in listmonk is unsubscribed; later imports and `add` leave it so."""
    cli("subscribers", "add", "uk", "spam.reporter@example.net")
    report = report_of(cli, "uk", LISTMONK)
    assert verdicts(report)["spam.reporter@example.net"] == "suppressed"
    assert cli.members("uk")["spam.reporter@example.net"]["status"] == "unsubscribed"

    plain = tmp_path / "plain.csv"
    plain.write_text("email\nspam.reporter@example.net\n", encoding="utf-8")
    assert verdicts(report_of(cli, "uk", plain))["spam.reporter@example.net"] == "unsubscribed"
    result = cli("subscribers", "add", "uk", "spam.reporter@example.net", ok=False)
    assert_one_line_error(result, "unsubscribed from uk", exit_code=result.exit_code)
    assert cli.members("uk")["spam.reporter@example.net"]["status"] == "unsubscribed"
    # The unsubscribe is in the audit log, under the import's source.
    unsubscribes = [e for e in cli.events() if e.kind == "unsubscribe"]
    assert {e.source for e in unsubscribes} == {"import:listmonk-subscribers.csv"}


def test_listmonk_dry_run_writes_nothing_and_predicts_the_import(cli: Cli) -> None:
    """The dry run's verdicts are exactly the import's, and the database is untouched by it."""
    cli("subscribers", "add", "uk", "anna.berg@example.org")
    before = snapshot(cli)
    planned = report_of(cli, "uk", LISTMONK, "--dry-run")
    assert snapshot(cli) == before
    applied = report_of(cli, "uk", LISTMONK)
    assert planned["rows"] == applied["rows"]
    assert planned["suppressed"] == applied["suppressed"] == 2


def test_mailman_member_list(cli: Cli) -> None:
    """`Name <addr>` (non-ASCII too), quoted names, `addr (Name)` and bare addresses; junk lines reported."""
    report = report_of(cli, "fr", MAILMAN)
    assert verdicts(report) == {
        "aperson@example.com": "added",
        "bperson@example.com": "added",
        "cperson@example.com": "added",
        "dperson@example.com": "added",
        "elodie.mueller@example.de": "added",
        "formula@example.org": "added",
        "angle.only@example.org": "added",
    }
    assert notes(report, "duplicates") == {8: "same address as line 2"}
    # Prose, two addresses on a line, a host without a domain: refused with their line numbers.
    assert set(notes(report, "rejected")) == {9, 11, 13}
    members = cli.members("fr")
    assert members["aperson@example.com"]["name"] == "Anne Person"
    assert members["bperson@example.com"]["name"] == "Person, Bart"
    assert members["dperson@example.com"]["name"] == "Dora Person"
    assert members["elodie.mueller@example.de"]["name"] == "Élodie Müller"
    assert members["cperson@example.com"]["name"] is None
    assert {m["status"] for m in members.values()} == {"active"}
    # A formula in a name is kept as text and neutralised when the list is exported.
    assert members["formula@example.org"]["name"] == '=HYPERLINK("http://evil.example/")'
    exported = cli("subscribers", "export", "fr").stdout
    assert """'=HYPERLINK(""http://evil.example/"")""" in exported


def test_headerless_address_list_and_explicit_format(cli: Cli, tmp_path: Path) -> None:
    """A bare list of addresses (no header, no final newline) imports; --format forces a reading."""
    report = report_of(cli, "uk", ADDRESSES)
    assert report["added"] == 3
    assert not report["rejected"]
    # Read as our CSV, the first address is taken for a header and refused with one line.
    copy = shutil.copy(ADDRESSES, tmp_path / "list.csv")
    result = run_import(cli, "dach", Path(copy), "--format", "csv", ok=False)
    assert_one_line_error(result, "no 'email' column")


def test_mailman_postorius_csv_and_overlong_line(cli: Cli, tmp_path: Path) -> None:
    """Postorius' CSV (email, display_name) is read by its header; a line over 998 characters is skipped."""
    postorius = tmp_path / "members.csv"
    postorius.write_text("email,display_name\r\nx.person@example.org,X Person\r\n", encoding="utf-8")
    report = report_of(cli, "uk", postorius, "--format", "mailman")
    assert verdicts(report) == {"x.person@example.org": "added"}
    assert cli.members("uk")["x.person@example.org"]["name"] == "X Person"

    long = tmp_path / "long.txt"
    long.write_text(f"ok@example.org\n{'a' * 2000}@example.org\n", encoding="utf-8")
    report = report_of(cli, "uk", long)
    assert verdicts(report) == {"ok@example.org": "added"}
    assert notes(report, "skipped") == {2: "the line is over 998 characters"}


def test_text_report_lists_suppressed_and_skipped(cli: Cli) -> None:
    """The human report counts suppressed and skipped rows and says why each was skipped."""
    output = run_import(cli, "uk", LISTMONK, "--dry-run").stdout
    assert output.splitlines()[0] == (
        "dry run, would have: added 5, updated 0, unchanged 0, rejected 2, suppressed 2, skipped 2"
    )
    assert "not imported:\n  line 5: 'on.leave@example.org': disabled in listmonk; not imported" in output


def test_workspace_upload_recognises_listmonk(ws: Workspace) -> None:
    """The workspace's upload plans a listmonk export (nothing written), then imports it as planned."""
    editor = session_for(ws, EDITOR)
    base = "/admin/groups/uk/subscribers/import"
    page = editor.get(base)
    assert "listmonk" in page.text
    plan = editor.post(
        base,
        data={"csrf": csrf_of(page.text)},
        files={"file": ("subscribers.csv", LISTMONK.read_bytes(), "text/csv")},
    )
    assert plan.status_code == 200
    assert "suppressed 2, skipped 2" in plan.text
    assert "disabled in listmonk; not imported" in plan.text
    assert ws.cli.members("uk") == {}
    action = re.search(r'action="(/admin/groups/uk/subscribers/import/[^"]+)"', plan.text)
    digest = re.search(r'name="digest" value="([^"]+)"', plan.text)
    assert action
    assert digest
    done = editor.post(action.group(1), data={"csrf": csrf_of(plan.text), "digest": digest.group(1)})
    assert done.status_code == 200
    members = ws.cli.members("uk")
    assert members["spam.reporter@example.net"]["status"] == "unsubscribed"
    assert members["Carlos.Mendes@example.com"]["status"] == "active"
