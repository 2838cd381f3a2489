"""Settings: newsletter.toml -> NEWSLETTER_* environment -> CLI overrides, frozen, secrets only from env."""

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from newsletter.core.errors import ConfigError, NewsletterError, SiteError
from newsletter.core.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder holding a copy of the example site's newsletter.toml."""
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy(REPO / "newsletter.toml", folder / "newsletter.toml")
    return folder


def config(site: Path) -> Path:
    return site / "newsletter.toml"


def edit(site: Path, old: str, new: str) -> int:
    """Replace ``old`` (which must occur once) by ``new``; return the line where ``new`` starts."""
    text = config(site).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    config(site).write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def line_of(site: Path, exact: str) -> int:
    lines = config(site).read_text(encoding="utf-8").splitlines()
    return lines.index(exact) + 1


def error(site: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(site, env={}, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- precedence --------------------------------------------------------------------------


def test_file_values(site: Path) -> None:
    """With no environment and no overrides the file's values are used."""
    settings = load_settings(site, env={})
    assert settings.site.name == "CEPIUG Patent Information News"
    assert settings.site.base_url == "https://news.example.org"
    assert settings.transport == "outbox"
    assert settings.outbox_dir == site.resolve() / "outbox"
    assert sorted(settings.groups) == ["cepiug", "dach", "fr", "uk"]
    assert settings.group("dach").timezone == "Europe/Berlin"
    assert settings.smtp_url is None
    assert settings.secret_key is None


def test_environment_beats_file(site: Path) -> None:
    """NEWSLETTER_* variables override the file."""
    env = {
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://news@db.example.org/news",
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_OUTBOX_DIR": "spool",
        "NEWSLETTER_BASE_URL": "https://staging.example.org/",
        "NEWSLETTER_SENDER": "Staging <staging@example.org>",
    }
    settings = load_settings(site, env=env)
    assert settings.database_url == "postgresql+psycopg://news@db.example.org/news"
    assert settings.transport == "smtp"
    assert settings.outbox_dir == site.resolve() / "spool"
    assert settings.site.base_url == "https://staging.example.org"
    assert settings.site.sender == "Staging <staging@example.org>"


def test_overrides_beat_environment(site: Path) -> None:
    """CLI overrides win over the environment; an override of None (flag not given) does not."""
    env = {"NEWSLETTER_TRANSPORT": "smtp", "NEWSLETTER_DATABASE_URL": "sqlite:////srv/env.db"}
    settings = load_settings(site, env=env, overrides={"delivery.transport": "outbox", "database.url": None})
    assert settings.transport == "outbox"
    assert settings.database_url == "sqlite:////srv/env.db"
    settings = load_settings(site, env=env, overrides={"database.url": "sqlite:////srv/cli.db"})
    assert settings.database_url == "sqlite:////srv/cli.db"
    assert settings.transport == "smtp"


def test_empty_variable_does_not_override(site: Path) -> None:
    """An empty NEWSLETTER_TRANSPORT is treated as unset, not as an empty value."""
    assert load_settings(site, env={"NEWSLETTER_TRANSPORT": ""}).transport == "outbox"


def test_only_the_given_environment_is_read(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When an environment mapping is passed, the process environment is not consulted."""
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "from-the-process")
    settings = load_settings(site, env={})
    assert settings.transport == "outbox"
    assert settings.secret_key is None
    assert load_settings(site).transport == "smtp"


def test_site_from_environment(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a site argument NEWSLETTER_SITE names the site folder."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"NEWSLETTER_SITE": str(site)})
    assert settings.site_dir == site.resolve()
    assert settings.config_file == site.resolve() / "newsletter.toml"


def test_missing_site_suggests_init(tmp_path: Path) -> None:
    """A folder without newsletter.toml is a SiteError that suggests `newsletter init`."""
    with pytest.raises(SiteError) as caught:
        load_settings(tmp_path, env={})
    assert "newsletter init" in str(caught.value)
    assert str(tmp_path) in str(caught.value)


# --- database URL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "relative"),
    [("sqlite:///newsletter.db", "newsletter.db"), ("sqlite:///data/news.db", "data/news.db")],
)
def test_relative_sqlite_url_is_resolved_against_site(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, relative: str
) -> None:
    """A relative SQLite path means a file in the site folder, whatever the current folder is."""
    edit(site, 'url = "sqlite:///newsletter.db"', f'url = "{url}"')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(site, env={})
    assert settings.database_url == f"sqlite:///{site.resolve()}/{relative}"


@pytest.mark.parametrize(
    "url",
    ["sqlite:////var/lib/news/news.db", "sqlite://", "postgresql+psycopg://news:pw@db.example.org:5432/news"],
)
def test_other_database_urls_are_kept(site: Path, url: str) -> None:
    """Absolute SQLite paths, in-memory SQLite and PostgreSQL URLs are used as written."""
    assert load_settings(site, env={"NEWSLETTER_DATABASE_URL": url}).database_url == url


def test_relative_sqlite_from_environment(site: Path) -> None:
    """A relative SQLite URL from the environment is resolved against the site too."""
    settings = load_settings(site, env={"NEWSLETTER_DATABASE_URL": "sqlite:///other.db"})
    assert settings.database_url == f"sqlite:///{site.resolve()}/other.db"


# --- frozen ------------------------------------------------------------------------------


def test_settings_are_frozen(site: Path) -> None:
    """Nothing in a resolved Settings can be changed after the fact."""
    settings = load_settings(site, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.transport = "smtp"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.site.name = "Changed"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.group("uk").timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.groups["mars"] = settings.group("uk")  # type: ignore[index]
    assert "mars" not in settings.groups


# --- secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "variable"),
    [
        ("[delivery]", "smtp_url", "smtp://news:hunter2@smtp.example.org:587", "NEWSLETTER_SMTP_URL"),
        ("[delivery]", "password", "hunter2", "NEWSLETTER_SMTP_PASSWORD"),
        ("[delivery]", "smtp_password", "hunter2", "password_file"),
        ("[site]", "secret_key", "hunter2-signing-key", "NEWSLETTER_SECRET_KEY"),
        ("[groups.uk]", "secret_key", "hunter2-signing-key", "NEWSLETTER_SECRET_KEY"),
    ],
)
def test_secret_in_file_is_an_error(site: Path, section: str, key: str, value: str, variable: str) -> None:
    """A secret in newsletter.toml is refused, naming file, line and the variable to use instead."""
    line = edit(site, f"{section}\n", f'{section}\n{key} = "{value}"\n') + 1
    message = error(site)
    assert f"{config(site)}:{line}:" in message
    assert key in message
    assert variable in message
    assert "hunter2" not in message


def test_secrets_from_environment_stay_out_of_repr(site: Path) -> None:
    """Secrets read from the environment are usable but never appear in repr() or str()."""
    env = {
        "NEWSLETTER_SMTP_URL": "smtp://news:s3cr3t-pw@smtp.example.org:587",
        "NEWSLETTER_SECRET_KEY": "k3y-0f-s1gning",
    }
    settings = load_settings(site, env=env)
    assert settings.smtp_url is not None
    assert settings.secret_key is not None
    assert settings.smtp_url.get_secret_value() == env["NEWSLETTER_SMTP_URL"]
    assert settings.secret_key.get_secret_value() == "k3y-0f-s1gning"
    for text in (repr(settings), str(settings), repr(settings.smtp_url), str(settings.secret_key)):
        assert "s3cr3t-pw" not in text
        assert "k3y-0f-s1gning" not in text


# --- invalid values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlim"', "groups.dach.timezone", "Europe/Berlim"),
        ('timezone = "Europe/Paris"', 'timezone = "CET+1"', "groups.fr.timezone", "time zone"),
        ('language = "de"', 'language = "german"', "groups.dach.language", "german"),
        ('language = "en"\n\n[database]', 'language = "xx"\n\n[database]', "site.language", "xx"),
        ('brand_color = "#8b1e3f"', 'brand_color = "maroon"', "groups.uk.brand_color", "colour"),
        ('brand_color = "#2e5b1e"', 'brand_color = "#2e5b1"', "groups.dach.brand_color", "colour"),
        (
            'base_url = "https://news.example.org"',
            'base_url = "news.example.org"',
            "site.base_url",
            "http",
        ),
        (
            'sender = "CEPIUG News <news@example.org>"',
            'sender = "CEPIUG News"',
            "site.sender",
            "address",
        ),
        ('url = "sqlite:///newsletter.db"', 'url = "mysql://news@db/news"', "database.url", "mysql"),
        ('url = "sqlite:///newsletter.db"', 'url = "not a url"', "database.url", "not a database URL"),
        ('transport = "outbox"', 'transport = "pigeon"', "delivery.transport", "outbox"),
        ('transport = "outbox"', 'transport = "outbox"\nretries = 3', "delivery.retries", "unknown"),
        (
            'template = "digest"\nbrand_color = "#4b2a7b"',
            'templat = "digest"',
            "groups.fr.templat",
            "unknown",
        ),
        ("[groups.uk]\n", '[groups.uk]\nlangauge = "en"\n', "groups.uk.langauge", "unknown"),
    ],
)
def test_invalid_value_names_file_line_and_key(
    site: Path, old: str, new: str, key: str, fragment: str
) -> None:
    """Each invalid setting gives one line with the file, the line of the key, the key and what is wrong."""
    start = edit(site, old, new)
    last = key.rsplit(".", 1)[1]
    line = start + next(i for i, text in enumerate(new.splitlines()) if text.startswith(f"{last} ="))
    message = error(site)
    assert message.startswith(f"{config(site)}:{line}: {key}: "), message
    assert fragment in message


def test_missing_site_name(site: Path) -> None:
    """A [site] without a name is reported at the [site] table with the key site.name."""
    edit(site, 'name = "CEPIUG Patent Information News"\n', "")
    message = error(site)
    assert message.startswith(f"{config(site)}:{line_of(site, '[site]')}: site.name: "), message
    assert "missing" in message


def test_missing_group_name(site: Path) -> None:
    """A group without a name is reported at that group's table."""
    edit(site, 'name = "Patentinformation DACH (Beispiel)"\n', "")
    message = error(site)
    assert message.startswith(f"{config(site)}:{line_of(site, '[groups.dach]')}: groups.dach.name: ")


def test_no_groups(site: Path) -> None:
    """A site must declare at least one group."""
    text = config(site).read_text()
    config(site).write_text(text[: text.index("[groups.cepiug]")])
    message = error(site)
    assert str(config(site)) in message
    assert "groups" in message


def test_several_problems_are_counted(site: Path) -> None:
    """With several problems the message shows the first and says how many more `check` will list."""
    edit(site, 'timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"')
    edit(site, 'brand_color = "#8b1e3f"', 'brand_color = "red"')
    message = error(site)
    assert "and 1 more problem" in message
    assert "newsletter check" in message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('transport = "outbox"', "transport = outbox"),
        ("[delivery]", "[delivery"),
        ('name = "CEPIUG"', 'name = "CEPIUG'),
        ('language = "fr"', 'language = "fr"\nlanguage = "de"'),
    ],
)
def test_toml_syntax_error_names_the_line(site: Path, old: str, new: str) -> None:
    """A TOML syntax error is reported with the file and the line it is on."""
    line = edit(site, old, new) + new.count("\n")
    message = error(site)
    assert message.startswith(f"{config(site)}:{line}: "), message
    assert "TOML" in message


def test_file_that_is_not_utf8(site: Path) -> None:
    """A newsletter.toml in another encoding is one line naming the file."""
    config(site).write_bytes('[site]\nname = "Société"\n'.encode("latin-1"))
    message = error(site)
    assert str(config(site)) in message
    assert "UTF-8" in message


@pytest.mark.parametrize(
    ("env", "overrides", "origin", "key"),
    [
        ({"NEWSLETTER_BASE_URL": "ftp://news.example.org"}, {}, "NEWSLETTER_BASE_URL", "site.base_url"),
        ({"NEWSLETTER_TRANSPORT": "pigeon"}, {}, "NEWSLETTER_TRANSPORT", "delivery.transport"),
        ({"NEWSLETTER_DATABASE_URL": "mysql://x/y"}, {}, "NEWSLETTER_DATABASE_URL", "database.url"),
        ({}, {"database.url": "oracle://x/y"}, "command line", "database.url"),
    ],
)
def test_invalid_value_from_environment_or_flags(
    site: Path, env: dict[str, str], overrides: dict[str, str], origin: str, key: str
) -> None:
    """A bad value from the environment names its variable; one from a flag says "command line"."""
    with pytest.raises(ConfigError) as caught:
        load_settings(site, env=env, overrides=overrides)
    message = str(caught.value)
    assert message.startswith(f"{origin}: {key}: "), message


def test_config_errors_are_newsletter_errors(site: Path) -> None:
    """Setting errors share the base class the CLI turns into one line."""
    edit(site, 'timezone = "Europe/Paris"', 'timezone = "Paris"')
    with pytest.raises(NewsletterError):
        load_settings(site, env={})


def test_cli_reports_bad_setting_in_one_line(cli: Any, site_dir: Path) -> None:
    """Through the CLI an invalid newsletter.toml is one line on stderr with file, line and key."""
    path = site_dir / "newsletter.toml"
    text = path.read_text()
    path.write_text(text.replace('timezone = "Europe/London"', 'timezone = "Europe/Londres"'))
    line = text[: text.index('timezone = "Europe/London"')].count("\n") + 1
    result = cli("items", "list", ok=False)
    assert result.exit_code != 0
    [only] = result.stderr.strip().splitlines()
    assert f"{path}:{line}: groups.uk.timezone:" in only


@pytest.mark.parametrize(
    "nesting",
    ["[" * 5000 + "]" * 5000, "[" * 40 + "]" * 40, "{a = " * 3000 + "1" + "}" * 3000],
    ids=["arrays-5000", "arrays-40", "tables-3000"],
)
def test_deeply_nested_toml_is_one_line_naming_the_file(site: Path, nesting: str) -> None:
    """Values nested thousands deep (tomllib's RecursionError) or too deep: one line naming the file."""
    edit(site, "[delivery]", f"[delivery]\nextra = {nesting}")
    message = error(site)
    assert message.startswith(f"{config(site)}: invalid TOML: values nested more than 32 levels deep"), (
        message
    )


def test_deeply_nested_schedule_is_a_problem_of_its_file(cli: Any, site_dir: Path) -> None:
    """A schedule file nested thousands deep is one problem naming it in `newsletter check`, no traceback."""
    schedule = next((site_dir / "schedules").glob("*.toml"))
    schedule.write_text("cron = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    result = cli("check", ok=False)
    assert "Traceback" not in result.output
    assert f"{schedule}: invalid TOML: values nested more than 32 levels deep" in result.output
