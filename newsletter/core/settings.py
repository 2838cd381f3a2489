"""Settings, resolved once: ``newsletter.toml`` -> ``NEWSLETTER_*`` environment -> CLI flags.

The result is a frozen :class:`Settings` passed down to everything that needs it; no
module reads the environment or the file on its own. Secrets never come from the
file: the SMTP URL or password and the signing key come from the environment, or the
SMTP password from a file outside the site folder (``[smtp] password_file``).

:func:`resolve` keeps every problem it finds (``newsletter check`` lists them all);
:func:`load_settings` stops at the first, as every other command does.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url

from newsletter.core.configfile import CONFIG_FILE, ConfigFile, Problem, locate, problems_from, read_config
from newsletter.core.credentials import password_path
from newsletter.core.errors import ConfigError, NotFoundError
from newsletter.core.i18n import use_site
from newsletter.core.identity import SenderIdentity, sender_identity
from newsletter.core.sections import (
    SLUG,
    AccountsSection,
    BouncesSection,
    CollectSection,
    DatabaseSection,
    DeliverySection,
    DkimSection,
    FetchSection,
    FieldConfig,
    GroupConfig,
    NotificationsSection,
    RelayConfig,
    RoleConfig,
    SiteConfig,
    SiteSection,
    SmtpSection,
    SourceConfig,
    WebhookConfig,
    WebSection,
)

# Plain settings the environment may override: variable -> (section, key).
ENV_OVERRIDES = {
    "NEWSLETTER_DATABASE_URL": ("database", "url"),
    "NEWSLETTER_TRANSPORT": ("delivery", "transport"),
    "NEWSLETTER_OUTBOX_DIR": ("delivery", "outbox_dir"),
    "NEWSLETTER_BASE_URL": ("site", "base_url"),
    "NEWSLETTER_SENDER": ("site", "sender"),
}


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
    # The [smtp] relay; its password from NEWSLETTER_SMTP_PASSWORD, else read from
    # smtp_password_file when the transport is opened (credentials.smtp_password).
    smtp: SmtpSection | None = None
    smtp_password: SecretStr | None = field(default=None, repr=False)
    smtp_password_file: Path | None = None
    web: WebSection = field(default_factory=WebSection)
    fetch: FetchSection = field(default_factory=FetchSection)
    collect: CollectSection = field(default_factory=CollectSection)
    # The site's own roles ([roles.NAME]) and the workspace's sessions ([accounts]).
    roles: Mapping[str, RoleConfig] = field(default_factory=dict)
    accounts: AccountsSection = field(default_factory=AccountsSection)
    # The subscribers' custom fields ([fields.NAME]), in the file's order.
    fields: Mapping[str, FieldConfig] = field(default_factory=dict)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    # Outbound webhooks ([[webhooks]]); the secrets that secret_env names, as read from
    # the environment (a secret_file is read when a delivery is signed, credentials.py).
    webhooks: tuple[WebhookConfig, ...] = ()
    webhook_secrets: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)

    @property
    def uses_development_key(self) -> bool:
        """True when no NEWSLETTER_SECRET_KEY is set and links are signed with the development key."""
        return self.secret_key is None

    @property
    def signing_key(self) -> str:
        """The key for links and VERP addresses; a fixed development key when none is set."""
        from newsletter.core.tokens import DEVELOPMENT_KEY

        return self.secret_key.get_secret_value() if self.secret_key else DEVELOPMENT_KEY

    def identity(self, group_slug: str | None = None) -> SenderIdentity:
        """Who ``group_slug``'s mail comes from (``core/identity.py``); None or a group the file
        no longer declares: the site's own identity."""
        group = self.groups.get(group_slug) if group_slug is not None else None
        return sender_identity(self.site, self.delivery, self.dkim, group)

    def identities(self) -> dict[str | None, SenderIdentity]:
        """The site's identity (key None) and every group's: what returned mail may be addressed to."""
        found: dict[str | None, SenderIdentity] = {None: self.identity()}
        found.update((slug, self.identity(slug)) for slug in self.groups)
        return found

    @property
    def bounce_address(self) -> str:
        """The site's own bounce address (mail that is no group's); a group's is ``identity(slug)``'s."""
        return self.identity().bounce_address

    @property
    def unsubscribe_address(self) -> str:
        """The site's own unsubscribe mailbox; a group's is ``identity(slug).unsubscribe_address``."""
        return self.identity().unsubscribe_address

    def group(self, slug: str) -> GroupConfig:
        try:
            return self.groups[slug]
        except KeyError:
            known = ", ".join(sorted(self.groups))
            raise NotFoundError(f"no group {slug!r} in {self.config_file} (known: {known})") from None


@dataclass(frozen=True)
class Resolution:
    """A site's settings as resolved from file, environment and flags, or what stops them."""

    site_dir: Path
    file: ConfigFile
    settings: Settings | None
    problems: tuple[Problem, ...]

    def require(self) -> Settings:
        """The settings; a ConfigError naming the first problem if there is any."""
        if self.settings is None or self.problems:
            raise ConfigError(_summarise(list(self.problems)))
        return self.settings


def resolve(
    site_dir: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Resolution:
    """Resolve the settings once. ``overrides`` are CLI flags as ``section.key`` -> value.

    A folder without ``newsletter.toml`` is a :class:`SiteError`; every other problem
    is kept in the result, each with its file and line (or its variable, or "command
    line", for a value that came from there).
    """
    env = os.environ if env is None else env
    site = Path(site_dir or env.get("NEWSLETTER_SITE") or ".").resolve()
    # The site's own translation files join the built-in catalogs (``core/i18n.py``).
    use_site(site)
    file = read_config(site)
    if file.config is None:
        return Resolution(site, file, None, file.problems)
    raw = file.config.model_dump()
    _apply_env(raw, env)
    variables = {f"{section}.{key}": name for name, (section, key) in ENV_OVERRIDES.items()}
    config, problems = _revalidate(raw, lambda key: variables.get(key, "environment"))
    if config is not None:
        for dotted, value in (overrides or {}).items():
            if value is not None:
                section, key = dotted.split(".", 1)
                raw.setdefault(section, {})[key] = value
        config, problems = _revalidate(raw, lambda key: "command line")
    if config is None:
        return Resolution(site, file, None, tuple(problems))
    settings = _settings(site, file.path, config, env)
    problems = _outside_site(settings, file)
    return Resolution(site, file, None if problems else settings, tuple(problems))


def load_settings(
    site_dir: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings once, or raise a ConfigError naming the first problem."""
    return resolve(site_dir, env=env, overrides=overrides).require()


def _settings(site: Path, path: Path, config: SiteConfig, env: Mapping[str, str]) -> Settings:
    smtp_url = env.get("NEWSLETTER_SMTP_URL")
    smtp_password = env.get("NEWSLETTER_SMTP_PASSWORD")
    signing_key = env.get("NEWSLETTER_SECRET_KEY")
    declared = config.smtp.password_file if config.smtp else None
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
        smtp_url=SecretStr(smtp_url) if smtp_url else None,
        secret_key=SecretStr(signing_key) if signing_key else None,
        bounces=config.bounces,
        dkim=config.dkim,
        relays=config.relays,
        relay_urls={r.name: SecretStr(env[r.url_env]) for r in config.relays if env.get(r.url_env)},
        smtp=config.smtp,
        smtp_password=SecretStr(smtp_password) if smtp_password else None,
        smtp_password_file=password_path(site, declared) if declared else None,
        web=config.web,
        fetch=config.fetch,
        collect=config.collect,
        roles=MappingProxyType(dict(config.roles)),
        accounts=config.accounts,
        fields=MappingProxyType(dict(config.fields)),
        notifications=config.notifications,
        webhooks=config.webhooks,
        webhook_secrets={
            w.name: SecretStr(env[w.secret_env])
            for w in config.webhooks
            if w.secret_env and env.get(w.secret_env)
        },
    )


def _outside_site(settings: Settings, file: ConfigFile) -> list[Problem]:
    """Secret files (SMTP password, webhook secrets) must be outside the site folder (version control)."""
    problems = []
    path = settings.smtp_password_file
    if path is not None and path.resolve().is_relative_to(settings.site_dir):
        problems.append(
            Problem(
                file.path,
                locate(file.text, ("smtp", "password_file")),
                "smtp.password_file",
                f"{path} is inside the site folder, which is under version control; keep the "
                "password outside it (e.g. /etc/newsletter/smtp-password) or use NEWSLETTER_SMTP_PASSWORD",
            )
        )
    for index, hook in enumerate(settings.webhooks):
        secret = password_path(settings.site_dir, hook.secret_file) if hook.secret_file else None
        if secret is not None and secret.resolve().is_relative_to(settings.site_dir):
            problems.append(
                Problem(
                    file.path,
                    locate(file.text, ("webhooks", index, "secret_file")),
                    f"webhooks.{hook.name}.secret_file",
                    f"{secret} is inside the site folder, which is under version control; keep the "
                    "secret outside it (e.g. /etc/newsletter/webhook-secret) or use secret_env",
                )
            )
    return problems


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


def _revalidate(raw: dict[str, Any], origin: Callable[[str], str]) -> tuple[SiteConfig | None, list[Problem]]:
    """Validate again after the environment or the command line changed ``raw``.

    ``origin`` names where a key's value came from (a variable, or the command line),
    since such a problem has no file and line.
    """
    try:
        return SiteConfig.model_validate(raw), []
    except ValidationError as exc:
        return None, [
            Problem(Path(origin(p.key)), None, p.key, p.message) for p in problems_from(exc, Path(), "")
        ]


def _summarise(problems: list[Problem]) -> str:
    first = str(problems[0])
    if len(problems) > 1:
        first += f" (and {len(problems) - 1} more problem(s); run `newsletter check` to see all)"
    return first


# What other modules import from here: the sections and the file's reader live in
# modules of their own, and these names keep one place to import them from.
__all__ = [
    "CONFIG_FILE",
    "ENV_OVERRIDES",
    "SLUG",
    "AccountsSection",
    "BouncesSection",
    "CollectSection",
    "ConfigFile",
    "DatabaseSection",
    "DeliverySection",
    "DkimSection",
    "FetchSection",
    "FieldConfig",
    "GroupConfig",
    "NotificationsSection",
    "Problem",
    "RelayConfig",
    "Resolution",
    "RoleConfig",
    "SenderIdentity",
    "Settings",
    "SiteConfig",
    "SiteSection",
    "SmtpSection",
    "SourceConfig",
    "WebSection",
    "WebhookConfig",
    "load_settings",
    "locate",
    "read_config",
    "resolve",
]
