"""What ``newsletter.toml`` may say: one pydantic model per table, validated on load.

Each model forbids unknown keys, so a misspelt setting is an error with its file and
line (``configfile.py`` locates it) instead of a silent default. The models hold
no secret: passwords and keys come from the environment or from files outside the
site folder (see ``settings.py`` and ``credentials.py``).
"""

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cssselect import GenericTranslator, SelectorError
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.core.language import normalize_language
from newsletter.core.permissions import BUILTIN_ROLES, PERMISSIONS, SITE_PERMISSIONS
from newsletter.core.webhookevents import TOPICS

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _language(value: str) -> str:
    return normalize_language(value)


_DNS_NAME = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"


def _mailbox(value: str | None) -> str | None:
    """A From or Reply-To address, with or without a display name."""
    if value is None:
        return None
    try:
        validate_email(value, allow_display_name=True, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an address such as 'News <news@example.org>' ({exc})") from None
    return value


def _bare_address(value: str | None) -> str | None:
    """An envelope address (the bounce address): ``local@domain``, no display name, no brackets."""
    if value is None:
        return None
    value = value.strip()
    if not re.fullmatch(r"[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+", value) or "+" in value.partition("@")[0]:
        raise ValueError(
            f"{value!r} is not an address such as news-bounces@example.org "
            "(no name, no '+': VERP adds '+...' to it)"
        )
    return value


def _dns_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower().rstrip(".")
    if not re.fullmatch(rf"{_DNS_NAME}(\.{_DNS_NAME})*", value):
        raise ValueError(f"{value!r} is not a DNS name such as example.org")
    return value


class SiteSection(_Section):
    name: str
    base_url: str
    sender: str
    reply_to: str | None = None
    postal_address: str
    language: str = "en"
    # The host part of every group's List-Id (``<SLUG.HOST>``); default: the sender's domain.
    list_id_domain: str | None = None

    _lang = field_validator("language")(_language)
    _list_host = field_validator("list_id_domain")(_dns_name)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as https://news.example.org")
        return value.rstrip("/")

    _address = field_validator("sender", "reply_to")(_mailbox)

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
    transport: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: str = "outbox"
    # Envelope sender for bounces (VERP-extended per message); default: <sender>-bounces@domain.
    bounce_address: str | None = None

    _bounce = field_validator("bounce_address")(_bare_address)
    # The default relay ([smtp] or NEWSLETTER_SMTP_URL): parallel connections, messages per
    # second (0: no limit), and messages per second to any one recipient domain (0: no limit).
    connections: int = Field(default=4, ge=1, le=64)
    rate: float = Field(default=0.0, ge=0)
    domain_rate: float = Field(default=0.0, ge=0)


# The port each TLS mode uses unless [smtp] port says otherwise (RFC 8314, RFC 6409, RFC 5321).
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_DNS_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"


class SmtpSection(_Section):
    """The relay ``transport = "smtp"`` sends through (``[smtp]``).

    The password is never written here: ``password_file`` names a file outside the
    site folder that only its owner may read, or ``NEWSLETTER_SMTP_PASSWORD`` holds
    it. ``NEWSLETTER_SMTP_URL``, when set, replaces this whole table.
    """

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    # starttls: plain connection upgraded with STARTTLS (port 587); tls: TLS from the
    # first byte (port 465); none: no encryption, only for a relay on this machine.
    tls: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = None
    password_file: str | None = None
    timeout: float = Field(default=30.0, gt=0, le=600)
    # false accepts a relay's self-signed certificate: for a test relay only.
    verify_certificate: bool = True

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        host = value.strip().lower().rstrip(".")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*", host):
                raise ValueError(
                    f"{value!r} is not a host name such as smtp.example.org (no scheme, no port)"
                ) from None
        return host

    @field_validator("user", "password_file")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave the key out instead)")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or SMTP_PORTS[self.tls]

    @property
    def local(self) -> bool:
        """Whether the relay runs on this machine, where a connection without TLS is safe."""
        return self.host in {"localhost", "127.0.0.1", "::1"}

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> "SmtpSection":
        if self.user and self.tls == "none" and not self.local:
            raise ValueError(
                f'tls = "none" would send the password for {self.user!r} unencrypted to '
                f'{self.host}; use tls = "starttls" or "tls"'
            )
        return self


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

    With ``[delivery] bounce_address`` set, a report that did not come back to the
    member's own signed VERP address is not believed: it asks for a probe, which stays
    open ``probe_days`` (long enough for a relay's five days of retries to end in a
    failure notice), and no second probe goes to the membership meanwhile.
    """

    threshold: float = Field(default=5.0, gt=0)
    hard_weight: float = Field(default=1.0, ge=0)
    soft_weight: float = Field(default=0.5, ge=0)
    window_days: int = Field(default=45, ge=1)
    hard_is_final: bool = True
    probe_days: int = Field(default=7, ge=1, le=90)


class DkimSection(_Section):
    """DKIM signing of outgoing editions (``newsletter/dkim.py``); absent: not signed."""

    selector: str
    domain: str
    # PEM private key (RSA, PKCS#1 or PKCS#8) the operator provides; relative to the site folder.
    key_file: str
    # A second signature with Ed25519 (RFC 8463): its own selector and PEM key, or neither.
    ed25519_selector: str | None = None
    ed25519_key_file: str | None = None

    _names = field_validator("selector", "domain", "ed25519_selector")(_dns_name)

    @model_validator(mode="after")
    def _ed25519_pair(self) -> "DkimSection":
        if (self.ed25519_selector is None) != (self.ed25519_key_file is None):
            raise ValueError("ed25519_selector and ed25519_key_file go together: set both or neither")
        return self


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
    # The logo's size in the email, in CSS pixels (shown at most 280 wide, height scaled):
    # explicit, so the layout does not jump when images load, and Outlook keeps the ratio.
    logo_width: int = Field(default=200, ge=1, le=2000)
    logo_height: int = Field(default=60, ge=1, le=2000)
    subscribers: str | None = None
    topics: tuple[str, ...] = ()
    # Four eyes: an edition is approved by someone other than whoever last changed it.
    require_second_person: bool = False
    # The group's own website ("https://www.example.org"): a sign-up form embedded there
    # may send the visitor back to a page of this origin, and to no other.
    website: str | None = None
    # The group's own sender identity (core/identity.py); each one left out is the site's.
    sender: str | None = None
    reply_to: str | None = None
    postal_address: str | None = None
    list_id_domain: str | None = None
    bounce_address: str | None = None
    dkim: DkimSection | None = None

    _lang = field_validator("language")(_language)
    _address = field_validator("sender", "reply_to")(_mailbox)
    _bounce = field_validator("bounce_address")(_bare_address)
    _list_host = field_validator("list_id_domain")(_dns_name)

    @field_validator("postal_address")
    @classmethod
    def _postal(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave the key out to use the site's)")
        return value.strip() if value is not None else None

    @field_validator("website")
    @classmethod
    def _website(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ValueError(f"{value!r} is not a website address such as https://www.example.org")
        return value.strip()

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

    @field_validator("logo_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s\"'<>]+", value.strip()):
            raise ValueError(f"{value!r} is not a web address starting with https://")
        return value.strip() if value else None

    @field_validator("brand_color")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError(f"{value!r} is not a colour such as #1f4e79")
        return value.lower()


class WebSection(_Section):
    """The subscriber pages (``newsletter serve``, ``[web]``)."""

    # The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed:
    # addresses or networks ("127.0.0.1", "10.0.0.0/8"). Empty: no header is believed,
    # and each client is the address of its own connection.
    trusted_proxies: tuple[str, ...] = ()
    # Where the sign-up and sign-in rate limits count: "auto" (this process's memory for
    # one `serve` process, the database for `serve --workers N`), "memory", "database",
    # or a Redis URL (redis://host:6379/0) shared by every process.
    rate_limit_store: str = "auto"
    # How long a subscriber page waits for the database (SQLite's write lock, held for a
    # moment by a send's records or a collect's batch) before answering 503 with
    # Retry-After: well before a visitor or their proxy gives up, and a visitor told to
    # try again was not subscribed.
    database_wait_seconds: float = Field(default=10.0, ge=0.1, le=60.0)
    # How long a request may wait for its turn in a busy `serve` process (each runs at
    # most 32 at once) before it is answered 503 with Retry-After, its work not started:
    # well before a visitor gives up, so that a busy moment cannot pile up (web/admission.py).
    request_wait_seconds: float = Field(default=3.0, ge=0.1, le=60.0)
    # Requests each JSON API token may make per hour (/api/v1/, counted on the same store
    # as the forms' limits); past it the API answers 429 with Retry-After.
    api_requests_per_hour: int = Field(default=3600, ge=1, le=1_000_000)

    @field_validator("rate_limit_store")
    @classmethod
    def _store(cls, value: str) -> str:
        value = value.strip()
        if value in {"auto", "memory", "database"} or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        raise ValueError(f'{value!r} is not "auto", "memory", "database" or a redis:// URL')

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network such as 127.0.0.1 or 10.0.0.0/8"
                ) from None
        return tuple(networks)


class SourceConfig(_Section):
    """A ``[[sources]]`` entry: a feed, or (``kind = "page"``) a listing page of article links."""

    name: str
    url: str
    kind: Literal["feed", "page"] = "feed"
    # Page sources: a CSS selector for the article links on the listing (without one, the
    # links outside menus, footers and banners), and how many new articles one collect
    # fetches at most (the rest come next time).
    link_selector: str | None = None
    max_articles: int = Field(default=20, ge=1, le=200)
    topic: str = ""
    groups: tuple[str, ...] = ("*",)
    approval: Literal["auto", "editor"] = "editor"
    since_days: int | None = None
    # Language the feed is written in, and how often `run-due` / the daemon fetch it.
    language: str = "en"
    interval_minutes: int = Field(default=60, ge=1)
    # true lets this source fetch from private, loopback and link-local addresses: an
    # intranet feed (or a test server on 127.0.0.1); see collecting/fetch.py.
    allow_private: bool = False

    _lang = field_validator("language")(_language)

    @field_validator("link_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            GenericTranslator().css_to_xpath(value)
        except SelectorError as exc:
            raise ValueError(f"{value!r} is not a CSS selector ({exc})") from None
        return value

    @model_validator(mode="after")
    def _page(self) -> "SourceConfig":
        if self.kind == "feed" and self.link_selector is not None:
            raise ValueError('link_selector is for kind = "page" sources only')
        if self.kind == "page" and not re.match(r"https?://[^/\s]+", self.url):
            raise ValueError(f"a page source needs an http(s) URL, not {self.url!r}")
        return self


class FetchSection(_Section):
    """Limits on every fetch from the internet (``[fetch]``; see ``collecting/fetch.py``).

    ``max_megabytes`` bounds what a server sends and, separately, what it inflates to;
    ``timeout`` is the wall-clock time one whole fetch may take, redirects included.
    """

    max_megabytes: float = Field(default=20.0, gt=0, le=1024)
    timeout: float = Field(default=60.0, gt=0, le=3600)
    max_redirects: int = Field(default=5, ge=0, le=20)
    # Inner networks ("10.0.0.0/8") that images named by Markdown items may be fetched
    # from (an intranet's image server); every other inner address is refused. Images
    # in a feed follow their source's ``allow_private``.
    allowed_networks: tuple[str, ...] = ()

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not a network such as 10.0.0.0/8") from exc
        return value


class CollectSection(_Section):
    """One ``collect`` run (``[collect]``): its whole time, and entries stored per transaction.

    Sources not reached within ``timeout`` seconds are reported and fetched next time; a
    big feed is stored ``batch_size`` entries per transaction, so other writers (sign-ups
    on the web pages) are never locked out for long.
    """

    timeout: float = Field(default=900.0, gt=0, le=86400)
    batch_size: int = Field(default=200, ge=1, le=100_000)


class RoleConfig(_Section):
    """A role of the site's own (``[roles.reviewer] permissions = [...]``), granted per group
    unless ``site_wide = true``; the permissions are names from ``core/permissions.py``."""

    permissions: tuple[str, ...]
    site_wide: bool = False
    description: str = ""

    @field_validator("permissions")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in PERMISSIONS]
        if unknown:
            known = ", ".join(sorted(PERMISSIONS))
            raise ValueError(f"unknown permission(s) {', '.join(map(repr, unknown))} (known: {known})")
        if not value:
            raise ValueError("a role needs at least one permission")
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _site_things_site_wide(self) -> "RoleConfig":
        managing = [p for p in self.permissions if p in SITE_PERMISSIONS and not p.endswith(".read")]
        if managing and not self.site_wide:
            raise ValueError(
                f"{', '.join(managing)} act(s) on the whole site: add site_wide = true to this role"
            )
        return self


class AccountsSection(_Section):
    """The workspace's accounts (``[accounts]``): how long an unused session stays signed in."""

    session_idle_minutes: int = Field(default=480, ge=5, le=60 * 24 * 30)


# The columns a subscriber CSV already has; a custom field may not take one of these names.
MEMBER_COLUMNS = frozenset({"email", "name", "language", "status", "source", "since"})


class FieldConfig(_Section):
    """A custom field kept per subscriber (``[fields.organisation] label = "Organisation"``).

    ``text`` holds one line of at most ``max_length`` characters; ``choice`` one of
    ``choices`` (the list page offers them as a filter). A CSV column with the field's
    name imports it; exports write it under that name.
    """

    label: str
    type: Literal["text", "choice"] = "text"
    choices: tuple[str, ...] = ()
    max_length: int = Field(default=200, ge=1, le=1000)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @model_validator(mode="after")
    def _choices(self) -> "FieldConfig":
        if self.type == "choice" and not self.choices:
            raise ValueError('a "choice" field needs choices = ["...", ...]')
        if self.type == "text" and self.choices:
            raise ValueError('choices are for type = "choice" fields')
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices repeat a value")
        return self


class NotificationsSection(_Section):
    """Notifications to the workspace's people (``[notifications]``).

    A source is reported to the admins once it has failed ``source_failures`` times in a
    row; nobody gets more than one digest per ``digest_minutes`` (an hour at least).
    """

    source_failures: int = Field(default=3, ge=1, le=1000)
    digest_minutes: int = Field(default=60, ge=60, le=60 * 24 * 7)


class WebhookConfig(_Section):
    """An endpoint that gets signed POSTs for the events it names (``[[webhooks]]``).

    Without ``groups`` it is the site's: every group's events, and items whatever their
    groups. With ``groups`` it gets only the events of those groups (an item when it is
    targeted at one of them). The signing secret (``whsec_`` and base64, as Standard
    Webhooks write it) is never written here: ``secret_env`` names the environment
    variable holding it, or ``secret_file`` a file outside the site folder that only
    its owner may read (as ``[smtp] password_file``). ``allow_private`` lets the URL
    be on a private or loopback address (an intranet receiver; see collecting/fetch.py).
    """

    name: str
    url: str
    events: tuple[str, ...] = ("*",)
    groups: tuple[str, ...] = ()
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    secret_file: str | None = None
    allow_private: bool = False
    # Seconds one POST may take, and attempts before a delivery is given up.
    timeout: float = Field(default=10.0, gt=0, le=60)
    max_attempts: int = Field(default=16, ge=1, le=50)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(f"webhook name {value!r} must be lower-case letters, digits, - or _")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as https://crm.example.org/hooks")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name != "*" and name not in TOPICS]
        if unknown:
            raise ValueError(
                f'unknown event(s) {", ".join(map(repr, unknown))} (known: {", ".join(TOPICS)}, or "*")'
            )
        if not value:
            raise ValueError('name at least one event, or "*" for every one')
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _one_secret(self) -> "WebhookConfig":
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError(
                'give the signing secret\'s place: secret_env = "NEWSLETTER_WEBHOOK_..." or '
                'secret_file = "/etc/newsletter/webhook-secret" (one of them, never the secret itself)'
            )
        return self

    def wants(self, topic: str) -> bool:
        return "*" in self.events or topic in self.events


class SiteConfig(_Section):
    site: SiteSection
    database: DatabaseSection = DatabaseSection()
    delivery: DeliverySection = DeliverySection()
    groups: dict[str, GroupConfig]
    sources: tuple[SourceConfig, ...] = ()
    bounces: BouncesSection = BouncesSection()
    dkim: DkimSection | None = None
    smtp: SmtpSection | None = None
    relays: tuple[RelayConfig, ...] = ()
    web: WebSection = WebSection()
    fetch: FetchSection = FetchSection()
    collect: CollectSection = CollectSection()
    roles: dict[str, RoleConfig] = {}
    accounts: AccountsSection = AccountsSection()
    fields: dict[str, FieldConfig] = {}

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldConfig]) -> dict[str, FieldConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
                raise ValueError(f"field name {name!r} must be lower-case letters, digits or _ (40 at most)")
            if name in MEMBER_COLUMNS:
                raise ValueError(f"field name {name!r} is a column every subscriber has; choose another")
        return value

    notifications: NotificationsSection = NotificationsSection()
    webhooks: tuple[WebhookConfig, ...] = ()

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: tuple[WebhookConfig, ...]) -> tuple[WebhookConfig, ...]:
        names = [hook.name for hook in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhook name(s) {', '.join(map(repr, repeated))} used more than once")
        return value

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[str, RoleConfig]) -> dict[str, RoleConfig]:
        for name in value:
            if name in BUILTIN_ROLES:
                raise ValueError(f"role {name!r} is built in; give your role another name")
            if not SLUG.match(name):
                raise ValueError(f"role name {name!r} must be lower-case letters, digits, - or _")
        return value

    @field_validator("groups")
    @classmethod
    def _slugs(cls, value: dict[str, GroupConfig]) -> dict[str, GroupConfig]:
        if not value:
            raise ValueError("declare at least one group, e.g. [groups.main]")
        for slug in value:
            if not SLUG.match(slug):
                raise ValueError(f"group name {slug!r} must be lower-case letters, digits, - or _")
        return value
