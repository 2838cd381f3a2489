"""Settings, resolved once: ``newsletter.toml`` -> ``NEWSLETTER_*`` environment -> CLI flags.

The result is a frozen :class:`Settings` passed down to everything that needs it; no
module reads the environment or the file on its own. Secrets (the SMTP URL with its
password, the signing key) come only from the environment: a secret found in the file
is an error, so it never ends up in version control.
"""

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.core.errors import ConfigError, SiteError
from newsletter.core.language import normalize_language

CONFIG_FILE = "newsletter.toml"
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Keys that hold secrets: refused in the file, read from these variables instead.
SECRET_KEYS = {
    "smtp_url": "NEWSLETTER_SMTP_URL",
    "smtp_password": "NEWSLETTER_SMTP_URL",
    "password": "NEWSLETTER_SMTP_URL",
    "secret_key": "NEWSLETTER_SECRET_KEY",
}
# Plain settings the environment may override: variable -> (section, key).
ENV_OVERRIDES = {
    "NEWSLETTER_DATABASE_URL": ("database", "url"),
    "NEWSLETTER_TRANSPORT": ("delivery", "transport"),
    "NEWSLETTER_OUTBOX_DIR": ("delivery", "outbox_dir"),
    "NEWSLETTER_BASE_URL": ("site", "base_url"),
    "NEWSLETTER_SENDER": ("site", "sender"),
}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _language(value: str) -> str:
    return normalize_language(value)


class SiteSection(_Section):
    name: str
    base_url: str
    sender: str
    reply_to: str | None = None
    postal_address: str
    language: str = "en"

    _lang = field_validator("language")(_language)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as https://news.example.org")
        return value.rstrip("/")

    @field_validator("sender", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            validate_email(value, allow_display_name=True, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(
                f"{value!r} is not an address such as 'News <news@example.org>' ({exc})"
            ) from None
        return value

    @field_validator("postal_address", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class DatabaseSection(_Section):
    url: str = "sqlite:///newsletter.db"

    @field_validator("url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"{value!r} is not a database URL") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"{url.get_backend_name()!r} is not supported; use sqlite:///FILE "
                "or postgresql+psycopg://USER@HOST/DB"
            )
        return value


class DeliverySection(_Section):
    transport: Literal["outbox", "smtp", "memory"] = "outbox"
    outbox_dir: str = "outbox"
    # Envelope sender for bounces (VERP-extended per message); default: <sender>-bounces@domain.
    bounce_address: str | None = None
    # The NEWSLETTER_SMTP_URL relay: parallel connections, messages per second (0: no limit),
    # and messages per second to any one recipient domain (0: no limit).
    connections: int = Field(default=4, ge=1, le=64)
    rate: float = Field(default=0.0, ge=0)
    domain_rate: float = Field(default=0.0, ge=0)


class RelayConfig(_Section):
    """One more SMTP relay (``[[relays]]``); its URL, with the password, comes from the environment."""

    name: str
    url_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    connections: int = Field(default=4, ge=1, le=64)
    rate: float = Field(default=0.0, ge=0)


class BouncesSection(_Section):
    """The bounce policy's scoring (``feedback/policy.py``), modelled on Mailman's.

    It applies alike to a 5xx refusal at send time and to a failure notice read by
    ``newsletter bounces process``.

    Each day with a bounce adds its weight to the membership's score (one score per
    day: the day's strongest bounce); the score starts again from zero after
    ``window_days`` without a bounce; at ``threshold`` the membership ends as
    ``bounced``. With ``hard_is_final`` a hard bounce (the mailbox or its domain does
    not exist) ends every membership of the address at once.
    """

    threshold: float = Field(default=5.0, gt=0)
    hard_weight: float = Field(default=1.0, ge=0)
    soft_weight: float = Field(default=0.5, ge=0)
    window_days: int = Field(default=45, ge=1)
    hard_is_final: bool = True


class DkimSection(_Section):
    """DKIM signing of outgoing editions (``newsletter/dkim.py``); absent: not signed."""

    selector: str
    domain: str
    # PEM private key (RSA, PKCS#1 or PKCS#8) the operator provides; relative to the site folder.
    key_file: str

    @field_validator("selector", "domain")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        label = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
        if not re.fullmatch(rf"{label}(\.{label})*", value):
            raise ValueError(f"{value!r} is not a DNS name such as example.org")
        return value


class GroupConfig(_Section):
    name: str
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    template: str = "digest"
    # Jinja2 subject line for editions built by hand; schedules bring their own.
    subject: str | None = None
    brand_color: str = "#1f4e79"
    logo_url: str | None = None
    subscribers: str | None = None
    topics: tuple[str, ...] = ()

    _lang = field_validator("language")(_language)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a known time zone (expected an IANA name such as Europe/Berlin)"
            ) from exc
        return value

    @field_validator("brand_color")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError(f"{value!r} is not a colour such as #1f4e79")
        return value.lower()


class SourceConfig(_Section):
    name: str
    url: str
    topic: str = ""
    groups: tuple[str, ...] = ("*",)
    approval: Literal["auto", "editor"] = "editor"
    since_days: int | None = None
    # Language the feed is written in, and how often `run-due` / the daemon fetch it.
    language: str = "en"
    interval_minutes: int = Field(default=60, ge=1)

    _lang = field_validator("language")(_language)


class SiteConfig(_Section):
    site: SiteSection
    database: DatabaseSection = DatabaseSection()
    delivery: DeliverySection = DeliverySection()
    groups: dict[str, GroupConfig]
    sources: tuple[SourceConfig, ...] = ()
    bounces: BouncesSection = BouncesSection()
    dkim: DkimSection | None = None
    relays: tuple[RelayConfig, ...] = ()

    @field_validator("groups")
    @classmethod
    def _slugs(cls, value: dict[str, GroupConfig]) -> dict[str, GroupConfig]:
        if not value:
            raise ValueError("declare at least one group, e.g. [groups.main]")
        for slug in value:
            if not SLUG.match(slug):
                raise ValueError(f"group name {slug!r} must be lower-case letters, digits, - or _")
        return value


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the site, located as precisely as we can."""

    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


@dataclass(frozen=True)
class Settings:
    """Everything resolved: pass this object down, never read the environment again."""

    site_dir: Path
    config_file: Path
    site: SiteSection
    database_url: str
    transport: str
    outbox_dir: Path
    delivery: DeliverySection
    groups: Mapping[str, GroupConfig]
    sources: tuple[SourceConfig, ...]
    smtp_url: SecretStr | None = field(default=None, repr=False)
    secret_key: SecretStr | None = field(default=None, repr=False)
    bounces: BouncesSection = field(default_factory=BouncesSection)
    dkim: DkimSection | None = None
    relays: tuple[RelayConfig, ...] = ()
    # The [[relays]] URLs as read from the environment variables they name.
    relay_urls: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)

    @property
    def signing_key(self) -> str:
        """The key for links and VERP addresses; a fixed development key when none is set."""
        from newsletter.core.tokens import DEVELOPMENT_KEY

        return self.secret_key.get_secret_value() if self.secret_key else DEVELOPMENT_KEY

    @property
    def bounce_address(self) -> str:
        if self.delivery.bounce_address:
            return self.delivery.bounce_address
        local, _, domain = parseaddr(self.site.sender)[1].rpartition("@")
        return f"{local}-bounces@{domain}"

    @property
    def unsubscribe_address(self) -> str:
        local, _, domain = parseaddr(self.site.sender)[1].rpartition("@")
        return f"{local}-unsubscribe@{domain}"

    def group(self, slug: str) -> GroupConfig:
        from newsletter.core.errors import NotFoundError

        try:
            return self.groups[slug]
        except KeyError:
            known = ", ".join(sorted(self.groups))
            raise NotFoundError(f"no group {slug!r} in {self.config_file} (known: {known})") from None


def locate(text: str, dotted: tuple[str | int, ...]) -> int | None:
    """Find the line of a key in TOML text, as well as a line-less parser lets us.

    tomllib gives no positions, and no maintained TOML library reports them, so this
    walks the table headers: the key's line inside its table, else the table's header.
    """
    parts = [str(p) for p in dotted if not isinstance(p, int)]
    if not parts:
        return None
    lines = text.splitlines()
    header_re = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    for depth in range(len(parts) - 1, -1, -1):
        table, key = ".".join(parts[:depth]), parts[depth] if depth < len(parts) else ""
        current = ""
        for number, line in enumerate(lines, start=1):
            header = header_re.match(line)
            if header:
                current = header.group(1).replace('"', "").replace(" ", "")
                if current == ".".join(parts[: depth + 1]):
                    return number
                continue
            if current == table and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
                return number
    return None


def _problems_from(exc: ValidationError, path: Path, text: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling; see docs/configuration.md)"
        elif error["type"] == "missing":
            message = "required setting is missing"
        key = ".".join(str(p) for p in loc)
        problems.append(Problem(path, locate(text, loc), key, message))
    return problems


def _secret_problems(raw: Mapping[str, Any], path: Path, text: str) -> list[Problem]:
    found = []

    def walk(node: Any, loc: tuple[str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in SECRET_KEYS:
                    message = f"secrets are read only from the environment; set {SECRET_KEYS[key]}"
                    found.append(Problem(path, locate(text, (*loc, key)), ".".join((*loc, key)), message))
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for item in node:
                walk(item, loc)

    walk(raw, ())
    return found


def read_config(site_dir: Path) -> tuple[SiteConfig | None, list[Problem]]:
    """Parse and validate ``newsletter.toml``; return the config or every problem found."""
    path = site_dir / CONFIG_FILE
    if not path.is_file():
        raise SiteError(
            f"{site_dir} is not a newsletter site: {CONFIG_FILE} is missing "
            "(create one with `newsletter init DIR`, or pass --site DIR)"
        )
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        return None, [Problem(path, None, "", f"not UTF-8 text ({exc.reason})")]
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        return None, [Problem(path, int(line.group(1)) if line else None, "", f"invalid TOML: {exc}")]
    return _validate(raw, path, text)


def _validate(raw: dict[str, Any], path: Path, text: str) -> tuple[SiteConfig | None, list[Problem]]:
    problems = _secret_problems(raw, path, text)
    for table in ("site", "database", "delivery"):
        for key in list(raw.get(table, {})):
            if key in SECRET_KEYS:
                del raw[table][key]
    try:
        config = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        return None, problems + _problems_from(exc, path, text)
    known = set(config.groups)
    for index, source in enumerate(config.sources):
        for slug in source.groups:
            if slug != "*" and slug not in known:
                problems.append(
                    Problem(
                        path,
                        locate(text, ("sources", index, "groups")),
                        f"sources.{source.name}.groups",
                        f"unknown group {slug!r} (known: {', '.join(sorted(known))})",
                    )
                )
    return (None if problems else config), problems


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for variable, (section, key) in ENV_OVERRIDES.items():
        if env.get(variable):
            raw.setdefault(section, {})[key] = env[variable]


def _resolve_db_url(url: str, site_dir: Path) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        database = Path(parsed.database)
        if not database.is_absolute():
            return parsed.set(database=str(site_dir / database)).render_as_string(hide_password=False)
    return url


def load_settings(
    site_dir: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings once. ``overrides`` are CLI flags as ``section.key`` -> value."""
    env = os.environ if env is None else env
    site = Path(site_dir or env.get("NEWSLETTER_SITE") or ".").resolve()
    path = site / CONFIG_FILE
    config, problems = read_config(site)
    if config is None:
        raise ConfigError(_summarise(problems))
    raw = config.model_dump()
    _apply_env(raw, env)
    variables = {f"{section}.{key}": name for name, (section, key) in ENV_OVERRIDES.items()}
    config = _revalidate(raw, lambda key: variables.get(key, "environment"))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            raw.setdefault(section, {})[key] = value
    config = _revalidate(raw, lambda key: "command line")
    smtp = env.get("NEWSLETTER_SMTP_URL")
    signing_key = env.get("NEWSLETTER_SECRET_KEY")
    return Settings(
        site_dir=site,
        config_file=path,
        site=config.site,
        database_url=_resolve_db_url(config.database.url, site),
        transport=config.delivery.transport,
        delivery=config.delivery,
        outbox_dir=site / config.delivery.outbox_dir,
        groups=MappingProxyType(dict(config.groups)),
        sources=config.sources,
        smtp_url=SecretStr(smtp) if smtp else None,
        secret_key=SecretStr(signing_key) if signing_key else None,
        bounces=config.bounces,
        dkim=config.dkim,
        relays=config.relays,
        relay_urls={r.name: SecretStr(env[r.url_env]) for r in config.relays if env.get(r.url_env)},
    )


def _revalidate(raw: dict[str, Any], origin: Callable[[str], str]) -> SiteConfig:
    """Validate again after the environment or the command line changed ``raw``.

    ``origin`` names where a key's value came from (a variable, or the command line),
    since such a problem has no file and line.
    """
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(Path(origin(p.key)), None, p.key, p.message) for p in _problems_from(exc, Path(), "")
        ]
        raise ConfigError(_summarise(problems)) from None


def _summarise(problems: list[Problem]) -> str:
    first = str(problems[0])
    if len(problems) > 1:
        first += f" (and {len(problems) - 1} more problem(s); run `newsletter check` to see all)"
    return first
