"""``newsletter init``: a new site folder from the skeleton, with its database migrated."""

import email.utils
import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from newsletter.core.db import Migration
from newsletter.core.errors import ConfigError, DatabaseError, InputError, file_error
from newsletter.core.settings import CONFIG_FILE, Settings, load_settings
from newsletter.core.site import migrate_site

# A display name made of these characters needs no quotes in an address (RFC 5322 atoms).
_ATOMS = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]+")


@dataclass(frozen=True)
class NewSite:
    settings: Settings
    migration: Migration


def init_site(
    directory: Path,
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NewSite:
    """Write the skeleton into ``directory`` and create its database at the newest revision.

    The database is the one the new site's settings name (``[database] url``, unless
    ``NEWSLETTER_DATABASE_URL`` or ``--database-url`` say otherwise).
    """
    write_skeleton(directory, name)
    try:
        settings = load_settings(directory, env=env, overrides=overrides)
        return NewSite(settings, migrate_site(settings))
    except (ConfigError, DatabaseError) as exc:
        # The folder is written and stays: what is left to do is the database.
        raise type(exc)(
            f"{exc} (the site folder {directory} is written; fix this, then run `newsletter migrate` there)"
        ) from exc


def write_skeleton(directory: Path, name: str) -> None:
    """Copy the skeleton into ``directory`` (files already there are kept)."""
    if (directory / CONFIG_FILE).exists():
        raise InputError(f"{directory} already holds a site ({CONFIG_FILE}); nothing was changed")
    skeleton = resources.files("newsletter") / "skeleton"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with resources.as_file(skeleton) as source:
            for path in sorted(Path(source).rglob("*")):
                relative = path.relative_to(source)
                target = directory / (".gitignore" if relative.name == "gitignore" else relative)
                if path.is_dir():
                    target.mkdir(exist_ok=True)
                elif path.name == CONFIG_FILE:
                    text = settings_text(path.read_text(encoding="utf-8"), name)
                    target.write_text(text, encoding="utf-8")
                elif not target.exists():
                    shutil.copyfile(path, target)
    except OSError as exc:
        raise file_error(exc, "cannot create the site at", exc.filename or directory) from None


def settings_text(skeleton: str, name: str) -> str:
    """The skeleton's newsletter.toml with the site's name written in as valid TOML.

    Any name works: "Patentinformation Österreich", "News, Weekly" or "R&D \\ IP"
    become a quoted display name in the sender, and every value is escaped for TOML.
    """
    name = " ".join(name.split()) or "My Newsletter"
    display = name if _ATOMS.fullmatch(name) else f'"{email.utils.quote(name)}"'
    # A JSON string is also a valid TOML basic string.
    sender = json.dumps(f"{display} <news@example.org>", ensure_ascii=False)
    text = skeleton.replace('"{name} <news@example.org>"', sender)
    return text.replace('"{name}"', json.dumps(name, ensure_ascii=False))
