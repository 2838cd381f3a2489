"""The SMTP relays a site sends through, from its settings, and what is wrong with them.

The default relay is ``NEWSLETTER_SMTP_URL`` when that is set (the environment wins
over the file), else the ``[smtp]`` table with its password from
``NEWSLETTER_SMTP_PASSWORD`` or ``[smtp] password_file``. Each ``[[relays]]`` entry
adds one more, its URL in the variable it names. ``newsletter check`` lists
:func:`smtp_problems` with file and line; :func:`relay_pool` stops at the first.
"""

from pathlib import Path
from urllib.parse import quote

from newsletter.core.configfile import Problem, locate
from newsletter.core.credentials import read_password_file
from newsletter.core.errors import ConfigError
from newsletter.core.sections import SmtpSection
from newsletter.core.settings import Settings
from newsletter.delivery.transports.relays import Relay, RelayPool, TokenBucket
from newsletter.delivery.transports.smtp import SmtpTransport

SCHEMES = {"starttls": "smtp+starttls", "tls": "smtps", "none": "smtp"}
SMTP_URL = Path("NEWSLETTER_SMTP_URL")
SECRET_KEY = Path("NEWSLETTER_SECRET_KEY")


def section_url(section: SmtpSection, password: str | None) -> str:
    """The ``[smtp]`` table as the URL the SMTP transports take (credentials quoted)."""
    userinfo = ""
    if section.user:
        secret = f":{quote(password, safe='')}" if password else ""
        userinfo = f"{quote(section.user, safe='')}{secret}@"
    host = f"[{section.host}]" if ":" in section.host else section.host
    query = "" if section.verify_certificate else "?verify=false"
    return f"{SCHEMES[section.tls]}://{userinfo}{host}:{section.effective_port}{query}"


def smtp_problems(settings: Settings) -> list[Problem]:
    """Everything that would stop a send over SMTP with these settings (none: it can start)."""
    text = _config_text(settings)
    return [*_default_relay(settings, text)[1], *_secret_key(settings), *_extra_relays(settings, text)]


def relay_pool(settings: Settings) -> RelayPool:
    """The relays as one transport; a ConfigError naming the first problem if it cannot send."""
    text = _config_text(settings)
    url, problems = _default_relay(settings, text)
    problems += _secret_key(settings) + _extra_relays(settings, text)
    if url is None or problems:
        raise ConfigError(str(problems[0]))
    delivery = settings.delivery
    timeout = settings.smtp.timeout if settings.smtp and settings.smtp_url is None else 30.0
    relays = [Relay("default", url, delivery.connections, TokenBucket(delivery.rate), timeout)]
    for extra in settings.relays:
        extra_url = settings.relay_urls[extra.name].get_secret_value()
        relays.append(Relay(extra.name, extra_url, extra.connections, TokenBucket(extra.rate)))
    return RelayPool(relays, domain_rate=delivery.domain_rate)


def _secret_key(settings: Settings) -> list[Problem]:
    if settings.secret_key is not None:
        return []
    message = (
        "not set; sending over SMTP needs it: it signs the unsubscribe links "
        "(a long random string; keep it stable)"
    )
    return [Problem(SECRET_KEY, None, "", message)]


def _extra_relays(settings: Settings, text: str) -> list[Problem]:
    """Each [[relays]] entry needs its URL in the variable it names, and a usable one."""
    problems = []
    for index, extra in enumerate(settings.relays):
        url = settings.relay_urls.get(extra.name)
        line = locate(text, ("relays", index, "url_env"))
        key = f"relays.{extra.name}.url_env"
        if url is None:
            message = f"set {extra.url_env} to the relay's SMTP URL"
            problems.append(Problem(settings.config_file, line, key, message))
            continue
        try:
            SmtpTransport.check(url.get_secret_value())
        except ConfigError as exc:
            problems.append(Problem(settings.config_file, line, key, f"{extra.url_env}: {exc}"))
    return problems


def _default_relay(settings: Settings, text: str) -> tuple[str | None, list[Problem]]:
    """The default relay's URL, or the problems that keep it from being known."""
    if settings.smtp_url is not None:
        url = settings.smtp_url.get_secret_value()
        try:
            SmtpTransport.check(url)
        except ConfigError as exc:
            return None, [Problem(SMTP_URL, None, "", str(exc))]
        return url, []
    section = settings.smtp
    if section is None:
        message = (
            "transport is smtp but no relay is configured: add an [smtp] table "
            "(host, port, tls, user, password_file; see docs/configuration.md) or set NEWSLETTER_SMTP_URL"
        )
        line = locate(text, ("delivery", "transport"))
        return None, [Problem(settings.config_file, line, "delivery.transport", message)]
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    if password is None and settings.smtp_password_file is not None:
        try:
            password = read_password_file(settings.smtp_password_file)
        except ConfigError as exc:
            line = locate(text, ("smtp", "password_file"))
            return None, [Problem(settings.config_file, line, "smtp.password_file", str(exc))]
    if section.user and password is None:
        message = "no password for this user: set [smtp] password_file or NEWSLETTER_SMTP_PASSWORD"
        return None, [Problem(settings.config_file, locate(text, ("smtp", "user")), "smtp.user", message)]
    return section_url(section, password), []


def _config_text(settings: Settings) -> str:
    """newsletter.toml again, only to give a problem its line."""
    try:
        return settings.config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
