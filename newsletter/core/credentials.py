"""Where the secrets come from: the SMTP password, and the keys that sign what we send.

The SMTP password comes from ``NEWSLETTER_SMTP_PASSWORD``, else from the file that
``[smtp] password_file`` names. That file lies outside the site folder (which is
under version control) and only its owner may read it: mode 0600 or stricter,
checked every time it is read, the way ssh treats a private key. Its content is the
password; one trailing line break is ignored.

A webhook's signing secret (``[[webhooks]]``) comes from the environment variable its
``secret_env`` names, or from its ``secret_file``, read like the password file. It is
written as Standard Webhooks write it, ``whsec_`` and the key in base64.

Links in emails (unsubscribe, preferences, VERP) are signed with
``NEWSLETTER_SECRET_KEY``; without it a fixed development key signs them, which is
fine for a look at the outbox and is never accepted for SMTP.
"""

import base64
import binascii
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.core.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.core.sections import WebhookConfig
    from newsletter.core.settings import Settings

WEBHOOK_SECRET_PREFIX = "whsec_"


def password_path(site_dir: Path, declared: str) -> Path:
    """The password file ``[smtp] password_file`` names: ``~`` expanded, relative to the site."""
    path = Path(declared).expanduser()
    return path if path.is_absolute() else site_dir / path


def read_password_file(path: Path, what: str = "the relay's password") -> str:
    """The password (or ``what`` else) in ``path``; a ConfigError saying why it cannot be used."""
    try:
        # Opened first and checked through the open descriptor, so the file checked is the file read.
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (write {what} into it, then chmod 600 {path})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(f"{path} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} can be read by others (mode {mode:04o}); run chmod 600 {path} "
                "(only its owner may read a password file)"
            )
        data = handle.read()
    try:
        password = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError(f"{path} is empty")
    return password


def signing_notice(settings: "Settings") -> str | None:
    """One line saying which keys sign, when the development key is in use; else None."""
    if not settings.uses_development_key:
        return None
    if settings.dkim is None:
        dkim = "DKIM: not signed (no [dkim] table)"
    else:
        key = settings.dkim
        dkim = f"DKIM: signed for {key.domain} with {key.key_file} (selector {key.selector})"
    return (
        "note: the links are signed with the development key, not a secret one "
        f"(set NEWSLETTER_SECRET_KEY before sending for real); {dkim}"
    )


def webhook_key(settings: "Settings", hook: "WebhookConfig") -> bytes:
    """The HMAC key that signs ``hook``'s deliveries; a ConfigError saying why there is none."""
    if hook.secret_env is not None:
        held = settings.webhook_secrets.get(hook.name)
        if held is None:
            raise ConfigError(
                f"webhook {hook.name!r}: {hook.secret_env} is not set (it holds the signing secret)"
            )
        secret, where = held.get_secret_value(), hook.secret_env
    else:
        assert hook.secret_file is not None
        path = password_path(settings.site_dir, hook.secret_file)
        secret, where = read_password_file(path, "the webhook's signing secret"), str(path)
    return decode_webhook_secret(secret.strip(), where)


def decode_webhook_secret(secret: str, where: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret (24 to 64 bytes, as Standard Webhooks ask)."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ConfigError(
            f"the webhook secret in {where} must start with {WEBHOOK_SECRET_PREFIX} "
            "(make one with `newsletter webhooks new-secret`)"
        )
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"the webhook secret in {where} is not base64 after {WEBHOOK_SECRET_PREFIX}"
        ) from None
    if not 24 <= len(key) <= 64:
        raise ConfigError(
            f"the webhook secret in {where} holds {len(key)} bytes; use 24 to 64 "
            "(make one with `newsletter webhooks new-secret`)"
        )
    return key


def new_webhook_secret() -> str:
    """A fresh random secret in the ``whsec_`` form, 32 bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")
