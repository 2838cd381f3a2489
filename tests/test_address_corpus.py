"""Address test vectors nobody here wrote, run through the importer and the parser.

The expected verdict is the corpus's own, except where the importer's policy
(``newsletter.audience.addresses.POLICY``) deliberately differs. Each difference is a named
predicate below with the reason for it; a case that matches none of them must get
exactly the corpus's verdict. See ../shared/corpora/addresses/SOURCES.md.
"""

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from newsletter.audience.addresses import POLICY, parse_address
from newsletter.core.errors import InvalidAddress
from tests.conftest import CORPORA, Cli

ADDRESSES = CORPORA / "addresses"
SYNTAX_FILE = ADDRESSES / "email_validator_syntax_cases.json"
ISEMAIL_FILE = ADDRESSES / "isemail" / "isemail_tests.json"
MISSING = f"address corpus not found at {ADDRESSES} (tests.conftest.CORPORA / 'addresses')"

# The message email-validator gives when the only fault is a display name it was told to refuse.
DISPLAY_NAME_REFUSED = "A display name and angle brackets around the email address are not permitted here."
# RFC 6761 / RFC 7686 special-use names and .arpa: email-validator refuses them unless
# test_environment=True (which, for "test", is how the corpus ran some cases).
SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")
# Deliberately narrow: lower-case dot-atoms under a letters-only top-level domain.
PLAIN_ADDRESS = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*@(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,}")
# A line ends at CRLF, LF or a lone CR (as in CSV); U+2028 and friends inside a field are data.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SyntaxCase:
    number: int
    group: str
    input: str
    verdict: str
    options: dict[str, Any]
    normalized: str | None
    error: str | None
    diagnosis: str | None

    def __str__(self) -> str:
        return f"case {self.number} ({self.group}) {self.input!r}"


def _syntax_cases() -> list[SyntaxCase]:
    if not SYNTAX_FILE.is_file():
        return []
    data = json.loads(SYNTAX_FILE.read_text(encoding="utf-8"))
    return [
        SyntaxCase(
            number=number,
            group=raw["group"],
            input=raw["input"],
            verdict=raw["verdict"],
            options=raw["options"],
            normalized=(raw.get("expected") or {}).get("normalized"),
            error=raw.get("error"),
            diagnosis=raw.get("isemail_diagnosis"),
        )
        for number, raw in enumerate(data["cases"])
    ]


def _isemail_cases() -> list[dict[str, Any]]:
    if not ISEMAIL_FILE.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(ISEMAIL_FILE.read_text(encoding="utf-8"))["cases"]
    return cases


SYNTAX_CASES = _syntax_cases()
ISEMAIL_CASES = _isemail_cases()


def _addr_spec(text: str) -> str:
    """The address proper: what is inside ``<...>`` when there is a display name."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        return text[text.rindex("<") + 1 : -1]
    return text


def _local_part(text: str) -> str:
    return _addr_spec(text).rpartition("@")[0]


def _domain(text: str) -> str:
    return _addr_spec(text).rpartition("@")[2].lower()


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- Policy deviations: the corpus says valid, the importer refuses. ---


def quoted_local_part(case: SyntaxCase) -> bool:
    # POLICY allow_quoted_local=False: relays and mail clients mangle "quoted" local
    # parts and no real subscriber has one. The corpus ran these with allow_quoted_local=True.
    return bool(case.options.get("allow_quoted_local")) and _addr_spec(case.input).startswith('"')


def domain_literal(case: SyntaxCase) -> bool:
    # POLICY allow_domain_literal=False: me@[127.0.0.1] names a host, not a mail domain
    # a newsletter should send to. The corpus ran these with allow_domain_literal=True.
    return bool(case.options.get("allow_domain_literal")) and _domain(case.input).startswith("[")


def empty_local_part(case: SyntaxCase) -> bool:
    # POLICY allow_empty_local=False: "@example.org" is nobody's mailbox.
    return bool(case.options.get("allow_empty_local"))


def special_use_domain(case: SyntaxCase) -> bool:
    # POLICY test_environment=False: .test, .local, .invalid ... never receive mail,
    # so an import refuses them. The corpus allowed them with test_environment=True.
    domain = _domain(case.input)
    special = any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE)
    return bool(case.options.get("test_environment")) and special


# --- Policy deviations: the corpus says invalid, the importer accepts. ---


def display_name(case: SyntaxCase) -> bool:
    # POLICY allow_display_name=True: address books export "Name <addr>" and the name is
    # kept. The corpus refused these only because display names were off (its error says so).
    return case.error == DISPLAY_NAME_REFUSED


def long_local_part(case: SyntaxCase) -> bool:
    # Not strict (email-validator's default): a local part over RFC 5321's 64 characters
    # is accepted, as real servers accept them. The corpus ran these with strict=True.
    local = _local_part(case.input)
    return bool(case.options.get("strict")) and len(local) > 64 and not local.startswith('"')


def surrounding_whitespace(case: SyntaxCase) -> bool:
    # The CSV reader strips every field (spreadsheets leave stray spaces and line breaks
    # around cells), so " a@b.org\r\n" arrives as "a@b.org". The corpus validates the raw
    # string and refuses it. Only stripped results that are plain addresses count here;
    # anything else must still get the corpus's verdict.
    stripped = case.input.strip()
    return stripped != case.input and PLAIN_ADDRESS.fullmatch(stripped) is not None


REFUSED_BY_POLICY: list[Callable[[SyntaxCase], bool]] = [
    quoted_local_part,
    domain_literal,
    empty_local_part,
    special_use_domain,
]
ACCEPTED_BY_POLICY: list[Callable[[SyntaxCase], bool]] = [
    display_name,
    long_local_part,
    surrounding_whitespace,
]


def expected_verdict(case: SyntaxCase) -> tuple[str, str | None]:
    """The importer's verdict for a case, and the deviation that decides it (if any)."""
    if case.verdict == "valid":
        for refused in REFUSED_BY_POLICY:
            if refused(case):
                return "invalid", refused.__name__
    else:
        for accepted in ACCEPTED_BY_POLICY:
            if accepted(case):
                return "valid", accepted.__name__
    return case.verdict, None


def expected_address(case: SyntaxCase, deviation: str | None) -> str | None:
    """The address the importer must store for an accepted case, where we know it."""
    if deviation == "display_name":
        return _addr_spec(case.input)
    if deviation == "surrounding_whitespace":
        return case.input.strip()
    return case.normalized


def write_csv(path: Path, emails: list[str], tags: list[str]) -> list[int]:
    """Write an ``email,case`` CSV, every field quoted; return each row's first line number."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(["email", "case"])
    starts = []
    for email, tag in zip(emails, tags, strict=True):
        starts.append(len(LINE_BREAK.findall(out.getvalue())) + 1)
        writer.writerow([email, tag])
    path.write_bytes(out.getvalue().encode("utf-8", errors="surrogatepass"))
    return starts


def test_policy_is_the_one_these_deviations_describe() -> None:
    """The deviations listed here are exactly the options newsletter.audience.addresses.POLICY sets."""
    assert POLICY["allow_quoted_local"] is False
    assert POLICY["allow_domain_literal"] is False
    assert POLICY["allow_empty_local"] is False
    assert POLICY["test_environment"] is False
    assert POLICY["allow_display_name"] is True
    assert POLICY["allow_smtputf8"] is True
    assert not POLICY.get("strict", False)
    assert POLICY["check_deliverability"] is False


@pytest.mark.skipif(not SYNTAX_CASES, reason=MISSING)
def test_every_stated_deviation_decides_at_least_one_case() -> None:
    """No deviation predicate is dead: each one changes the verdict of some corpus case."""
    used = {expected_verdict(case)[1] for case in SYNTAX_CASES}
    for predicate in REFUSED_BY_POLICY + ACCEPTED_BY_POLICY:
        assert predicate.__name__ in used, f"{predicate.__name__} matches no case; remove it"


@pytest.mark.skipif(not SYNTAX_CASES, reason=MISSING)
def test_every_syntax_case_gets_its_verdict_through_subscribers_import(cli: Cli, tmp_path: Path) -> None:
    """All email-validator syntax cases, imported from one CSV, are accepted or refused as expected."""
    cases = [case for case in SYNTAX_CASES if _utf8_encodable(case.input)]
    path = tmp_path / "syntax-cases.csv"
    lines = write_csv(path, [case.input for case in cases], [str(case.number) for case in cases])

    report = json.loads(cli("subscribers", "import", "cepiug", str(path), "--json").stdout)
    members = json.loads(cli("subscribers", "list", "cepiug", "--json").stdout)
    stored = {member["email"] for member in members}
    rejected = {note["line"]: note for note in report["rejected"]}

    problems = []
    accepted_rows = 0
    for case, line in zip(cases, lines, strict=True):
        verdict, deviation = expected_verdict(case)
        because = f" (policy deviation: {deviation})" if deviation else ""
        if verdict == "invalid":
            if line not in rejected:
                problems.append(f"line {line}: {case} was accepted, expected refused{because}")
            elif rejected[line]["email"] != case.input.strip():
                problems.append(f"line {line}: {case} reported as {rejected[line]['email']!r}")
            continue
        accepted_rows += 1
        if line in rejected:
            reason = rejected[line]["reason"]
            problems.append(f"line {line}: {case} was refused ({reason}), expected accepted{because}")
            continue
        address = expected_address(case, deviation)
        if address is not None and address not in stored:
            problems.append(f"line {line}: {case} accepted, but {address!r} is not among the members")
    assert not problems, f"{len(problems)} case(s) got the wrong verdict:\n" + "\n".join(problems)

    case_lines = set(lines)
    assert set(rejected) <= case_lines, f"rejected lines that hold no case: {set(rejected) - case_lines}"
    assert report["updated"] == 0
    assert report["unchanged"] == 0
    assert report["added"] == len(members), "every added row must be a member, and no more"
    assert len(members) + len(report["duplicates"]) == accepted_rows, (
        f"{accepted_rows} rows accepted, but {len(members)} members and "
        f"{len(report['duplicates'])} merged duplicates"
    )


@pytest.mark.skipif(not SYNTAX_CASES, reason=MISSING)
def test_cases_that_utf8_cannot_encode_make_the_import_fail_cleanly(cli: Cli, tmp_path: Path) -> None:
    """A row holding a lone surrogate (as raw bytes) fails the import with one line naming file and line."""
    cases = [case for case in SYNTAX_CASES if not _utf8_encodable(case.input)]
    assert cases, "the corpus should hold lone-surrogate cases (U+D800)"
    for case in cases:
        path = tmp_path / f"case-{case.number}.csv"
        lines = write_csv(path, ["fine@example.org", case.input], ["ok", str(case.number)])
        result = cli("subscribers", "import", "cepiug", str(path), ok=False)
        error = result.stderr.strip()
        assert result.exit_code == 2, f"{case}: exit {result.exit_code}: {result.output}"
        assert "\n" not in error, f"{case}: the error must be one line: {error!r}"
        assert "Traceback" not in result.output, f"{case}: {result.output}"
        assert f"{path}:{lines[1]}:" in error, f"{case}: the error must name file and line: {error}"
        assert "not UTF-8" in error, f"{case}: {error}"
        assert result.stdout == "", f"{case}: nothing may be reported as imported: {result.stdout}"
    members = json.loads(cli("subscribers", "list", "cepiug", "--json").stdout)
    assert members == [], "a failed import must not add the rows before the bad one"


# --- isemail: checked straight against parse_address. ---

# The policy for each isemail verdict (see SOURCES.md for how verdicts map to categories).
ISEMAIL_ACCEPTED = {
    # ISEMAIL_VALID, and ISEMAIL_DNSWARN: the DNS warnings were lookups made around 2012.
    # We never look up DNS, and all eight are syntactically valid, so they are checked
    # like any other valid address rather than skipped.
    "valid": True,
    # RFC 5321 oddities: quoted local parts and IP literals (refused by POLICY, as above),
    # numeric top-level domains and dotless domains (no real mail domain looks like that).
    "valid_unusual": False,
    # Comments and folding whitespace: only legal inside a message header, not an envelope.
    "valid_in_message_only": False,
    "deprecated": False,
    "invalid_for_smtp": False,
    "invalid": False,
}


def isemail_dotless_domain(address: str) -> bool:
    # email-validator refuses a domain without a dot ("test@io"): ICANN forbids dotless
    # domains for mail (SAC053, RFC 7085), so no subscriber can have one. isemail accepts it.
    domain = _domain(address)
    return "." not in domain and not domain.startswith("[")


def isemail_surrounding_whitespace(address: str) -> bool:
    # parse_address strips surrounding whitespace, as the CSV reader does (see
    # surrounding_whitespace above); isemail judges the raw string.
    stripped = address.strip()
    return stripped != address and PLAIN_ADDRESS.fullmatch(stripped) is not None


def isemail_long_local_part(case: dict[str, Any]) -> bool:
    # Not strict: an unquoted local part over 64 characters is accepted (see long_local_part).
    local = _local_part(case["address"])
    return case["diagnosis"] == "ISEMAIL_RFC5322_LOCAL_TOOLONG" and not local.startswith('"')


def isemail_expected(case: dict[str, Any]) -> tuple[bool, str | None]:
    accepted = ISEMAIL_ACCEPTED[case["verdict"]]
    if accepted and isemail_dotless_domain(case["address"]):
        return False, "isemail_dotless_domain"
    if not accepted and isemail_surrounding_whitespace(case["address"]):
        return True, "isemail_surrounding_whitespace"
    if not accepted and isemail_long_local_part(case):
        return True, "isemail_long_local_part"
    return accepted, None


def _isemail_params() -> list[Any]:
    if not ISEMAIL_CASES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="missing")]
    return [pytest.param(case, id=f"isemail-{case['id']}") for case in ISEMAIL_CASES]


@pytest.mark.parametrize("case", _isemail_params())
def test_isemail_case_verdict(case: dict[str, Any]) -> None:
    """parse_address accepts what isemail calls valid and refuses the rest, but for the stated deviations."""
    should_accept, deviation = isemail_expected(case)
    described = f"isemail {case['id']} {case['address']!r} ({case['verdict']}, {case['diagnosis']})" + (
        f", policy deviation {deviation}" if deviation else ""
    )
    accepted_as: str | None = None
    refusal = ""
    try:
        accepted_as = parse_address(case["address"]).email
    except InvalidAddress as exc:
        refusal = str(exc)
    if should_accept:
        assert accepted_as is not None, f"{described} was refused: {refusal}"
    else:
        assert accepted_as is None, f"{described} was accepted as {accepted_as!r}"
