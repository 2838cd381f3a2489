"""Sending for real configured in the site: the [smtp] table, its password file, and what `check` says.

The relay is a real aiosmtpd server on 127.0.0.1 (tests/smtp_server.py); the sends go
through the CLI with nothing in the environment but what each test sets.
"""

import json
import os
import ssl
from pathlib import Path

import pytest
from click.testing import Result

from newsletter.core.errors import ConfigError
from newsletter.core.sections import SmtpSection
from newsletter.core.settings import load_settings
from newsletter.delivery.transports.relayconfig import section_url
from newsletter.delivery.transports.smtp import SmtpUrl
from newsletter.operations.newsite import settings_text
from tests.conftest import REPO, Cli
from tests.smtp_server import free_port, running_server

KEY = "smtp-config-test-signing-key-5e0b7c1d"
PASSWORD = "pässwört: 1/2@3%"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NEWSLETTER_* setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name != "NEWSLETTER_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    """A folder outside the site for the password file."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    return folder


def password_file(folder: Path, password: str = PASSWORD, mode: int = 0o600) -> Path:
    path = folder / "smtp-password"
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def use_smtp(site: Path, table: str, *, transport: str = "smtp") -> int:
    """Set [delivery] transport and append ``table`` to newsletter.toml; the line of its first key."""
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace('transport = "outbox"', f'transport = "{transport}"')
    config.write_text(f"{text.rstrip()}\n\n[smtp]\n{table.strip()}\n", encoding="utf-8")
    return len(text.rstrip().splitlines()) + 3


def line_of(site: Path, start: str) -> int:
    lines = (site / "newsletter.toml").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith(start))


@pytest.fixture
def cli(site_dir: Path, tmp_path: Path) -> Cli:
    """The CLI on a copy of the example site and a migrated SQLite database."""
    return Cli(site_dir, f"sqlite:///{tmp_path / 'smtp.db'}")


def edition_for(cli: Cli, group: str = "dach") -> tuple[int, set[str]]:
    """An approved edition for the group, and the addresses of its members."""
    cli("subscribers", "import", group, str(cli.site / "subscribers" / f"{group}.csv"))
    files = sorted((cli.site / "samples" / "items").glob("*.md"))
    cli("items", "add", "--approve", *(arg for path in files for arg in ("--file", str(path))))
    edition_id = int(json.loads(cli("editions", "build", group, "--json").stdout)["id"])
    cli("editions", "approve", str(edition_id))
    return edition_id, set(cli.members(group, "--status", "active"))


def check(cli: Cli, *flags: str) -> Result:
    return cli(*flags, "check", ok=False)


# --- resolving [smtp] --------------------------------------------------------------------


def test_smtp_table_is_resolved(site_dir: Path, secrets: Path) -> None:
    """[smtp] becomes Settings.smtp, the port follows the TLS mode, the password file is found."""
    path = password_file(secrets)
    use_smtp(site_dir, f'host = "Relay.Example.org"\ntls = "tls"\nuser = "news"\npassword_file = "{path}"')
    settings = load_settings(site_dir, env={})
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.effective_port, settings.smtp.user) == (
        "relay.example.org",
        465,
        "news",
    )
    assert settings.smtp_password_file == path
    assert settings.transport == "smtp"
    assert PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ('host = "relay.example.org"\ntls = "ssl"', "smtp.tls", "'starttls', 'tls' or 'none'"),
        ('host = "smtp://relay.example.org"', "smtp.host", "no scheme"),
        ('host = "relay.example.org"\nport = 0', "smtp.port", "greater than or equal to 1"),
        ('host = "relay.example.org"\nusr = "news"', "smtp.usr", "unknown setting"),
        ('host = "relay.example.org"\npassword = "hunter2"', "smtp.password", "NEWSLETTER_SMTP_PASSWORD"),
        (
            'host = "relay.example.org"\npassword_file = "secrets/smtp"',
            "smtp.password_file",
            "inside the site",
        ),
        ('host = "relay.example.org"\ntls = "none"\nuser = "news"', "smtp", "unencrypted"),
    ],
)
def test_a_wrong_smtp_table_is_one_line_with_its_place(
    cli: Cli, site_dir: Path, table: str, key: str, fragment: str
) -> None:
    """Each mistake in [smtp] stops every command with file, line and key; `check` lists it the same way."""
    use_smtp(site_dir, table)
    config = site_dir / "newsletter.toml"
    first = key.rsplit(".", 1)[-1]
    line = line_of(site_dir, "[smtp]" if key == "smtp" else f"{first} =")
    with pytest.raises(ConfigError) as raised:
        load_settings(site_dir, env={})
    assert str(raised.value).startswith(f"{config}:{line}: {key}: "), raised.value
    assert fragment in str(raised.value)
    assert "hunter2" not in str(raised.value)
    report = json.loads(cli("check", "--json", ok=False).stdout)
    assert {"file": str(config), "line": line, "key": key} in [
        {k: p[k] for k in ("file", "line", "key")} for p in report["problems"]
    ], report


def test_local_relay_without_tls_is_allowed(site_dir: Path) -> None:
    """tls = "none" is refused only where a password would cross the network in clear."""
    use_smtp(site_dir, 'host = "127.0.0.1"\nport = 2525\ntls = "none"\nuser = "news"')
    smtp = load_settings(site_dir, env={}).smtp
    assert smtp is not None
    assert (smtp.tls, smtp.effective_port) == ("none", 2525)


def test_section_url_quotes_the_credentials() -> None:
    """The [smtp] table turns into a relay URL that parses back to the same user and password."""
    section = SmtpSection(host="relay.example.org", user="news@example.org", verify_certificate=False)
    parsed = SmtpUrl.parse(section_url(section, PASSWORD))
    assert (parsed.scheme, parsed.host, parsed.port) == ("smtp+starttls", "relay.example.org", 587)
    assert (parsed.username, parsed.password, parsed.verify) == ("news@example.org", PASSWORD, False)


def test_the_skeleton_smtp_example_works_once_uncommented(tmp_path: Path, secrets: Path) -> None:
    """The commented [smtp] example that `init` writes is valid as it stands, once uncommented."""
    skeleton = (REPO / "newsletter" / "skeleton" / "newsletter.toml").read_text(encoding="utf-8")
    lines = settings_text(skeleton, "Example").splitlines()
    start = lines.index("# [smtp]")
    end = next(n for n in range(start, len(lines)) if not lines[n].startswith("#"))
    lines[start:end] = [line.removeprefix("# ") for line in lines[start:end]]
    site = tmp_path / "skeleton"
    site.mkdir()
    (site / "newsletter.toml").write_text("\n".join(lines), encoding="utf-8")
    settings = load_settings(site, env={})
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.tls, settings.smtp.effective_port) == (
        "smtp.example.org",
        "starttls",
        587,
    )
    assert settings.smtp_password_file == Path("/etc/newsletter/smtp-password")


# --- check -------------------------------------------------------------------------------


def test_check_reports_the_password_file(
    cli: Cli, site_dir: Path, secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` says when the password file is missing or readable by others, at its line; 0600 passes."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    path = secrets / "smtp-password"
    use_smtp(site_dir, f'host = "relay.example.org"\nuser = "news"\npassword_file = "{path}"')
    where = f"{site_dir / 'newsletter.toml'}:{line_of(site_dir, 'password_file =')}: smtp.password_file: "

    missing = check(cli)
    assert missing.exit_code == 1
    assert f"{where}{path} does not exist" in missing.stderr

    password_file(secrets, mode=0o644)
    loose = check(cli)
    assert f"{where}{path} can be read by others (mode 0644); run chmod 600 {path}" in loose.stderr

    password_file(secrets, mode=0o600)
    assert check(cli).stdout.startswith("site OK")
    # The environment's password wins: the file is not needed then.
    path.unlink()
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "from-the-environment")
    assert check(cli).stdout.startswith("site OK")


def test_check_reports_what_stops_an_smtp_send(cli: Cli, site_dir: Path) -> None:
    """With transport smtp, `check` lists a missing relay and signing key; the outbox needs neither."""
    assert check(cli).exit_code == 0
    result = check(cli, "--transport", "smtp")
    assert result.exit_code == 1
    transport_line = line_of(site_dir, "transport =")
    assert (
        f"{site_dir / 'newsletter.toml'}:{transport_line}: delivery.transport: transport is smtp but no "
        "relay is configured"
    ) in result.stderr
    assert "NEWSLETTER_SECRET_KEY: not set; sending over SMTP needs it" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "2 problem(s) found"


def test_check_uses_the_flags_and_the_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` sees --database-url and NEWSLETTER_* as every other command does (it used to ignore them)."""
    problems = json.loads(cli("--database-url", "mysql://news@db/news", "check", "--json", ok=False).stdout)
    assert [(p["file"], p["key"]) for p in problems["problems"]] == [("command line", "database.url")]
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "pigeon")
    result = cli("check", ok=False)
    assert result.stderr.startswith("NEWSLETTER_TRANSPORT: delivery.transport: "), result.stderr


# --- sending through [smtp] ---------------------------------------------------------------


def test_an_edition_goes_out_through_the_smtp_table(
    cli: Cli, site_dir: Path, secrets: Path, monkeypatch: pytest.MonkeyPatch, certificate: ssl.SSLContext
) -> None:
    """STARTTLS and AUTH with the password from the file: every member gets the edition, no URL in the env."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    edition_id, members = edition_for(cli)
    path = password_file(secrets)
    with running_server(tls="starttls", ssl_context=certificate, credentials=("news", PASSWORD)) as server:
        use_smtp(
            site_dir,
            f'host = "127.0.0.1"\nport = {server.port}\ntls = "starttls"\nuser = "news"\n'
            f'password_file = "{path}"\nverify_certificate = false\ntimeout = 10',
        )
        result = cli("editions", "send", str(edition_id))
        assert "(via smtp)" in result.stdout
        assert "note:" not in result.stderr
        assert {r for m in server.messages for r in m.rcpt_tos} == members
        assert len(server.messages) == len(members)
        assert [(login.username, login.password, login.tls) for login in server.handler.logins] == [
            ("news", PASSWORD, True)
        ]


def test_the_environment_url_wins_over_the_smtp_table(
    cli: Cli, site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NEWSLETTER_SMTP_URL replaces [smtp] (whose relay here is down): the environment wins over the file."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    edition_id, members = edition_for(cli)
    use_smtp(site_dir, f'host = "127.0.0.1"\nport = {free_port()}\ntls = "none"')
    with running_server() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url())
        cli("editions", "send", str(edition_id))
        assert {r for m in server.messages for r in m.rcpt_tos} == members


# --- which key signs ---------------------------------------------------------------------


def test_sending_with_the_development_key_says_so(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`editions send` to the outbox and `send-test` name the development key in one line, a real key none."""
    edition_id, _ = edition_for(cli)
    assert "note:" not in cli("editions", "send", str(edition_id), "--dry-run").stderr
    test_copy = cli("send-test", str(edition_id), "--to", "editor@example.org")
    sent = cli("editions", "send", str(edition_id))
    for result in (test_copy, sent):
        notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
        assert notes == [
            "note: the links are signed with the development key, not a secret one (set "
            "NEWSLETTER_SECRET_KEY before sending for real); DKIM: not signed (no [dkim] table)"
        ], result.stderr
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    assert "note:" not in cli("send-test", str(edition_id), "--to", "editor@example.org").stderr
