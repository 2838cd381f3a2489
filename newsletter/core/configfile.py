"""Reading ``newsletter.toml``: parse, validate, and place every problem on its line.

tomllib gives no positions, so :func:`locate` finds a key's line by walking the
table headers. A secret written in the file is a problem of its own, so a password
never ends up in version control.
"""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from newsletter.core.errors import SiteError, file_hint
from newsletter.core.sections import SiteConfig

CONFIG_FILE = "newsletter.toml"
# Keys that hold secrets: refused in the file, with where the secret goes instead.
SECRET_KEYS = {
    "smtp_url": "set NEWSLETTER_SMTP_URL",
    "smtp_password": "set NEWSLETTER_SMTP_PASSWORD or name a file with [smtp] password_file",
    "password": "set NEWSLETTER_SMTP_PASSWORD or name a file with [smtp] password_file",
    "secret_key": "set NEWSLETTER_SECRET_KEY",
    "secret": "name its environment variable with secret_env, or a file outside the site with secret_file",
}


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

    @classmethod
    def unreadable(cls, path: Path, exc: OSError) -> "Problem":
        """A file of the site that is there but cannot be read."""
        return cls(path, None, "", f"cannot read it ({exc.strerror or exc}); {file_hint(exc)}")


@dataclass(frozen=True)
class ConfigFile:
    """``newsletter.toml`` as read: its text, and the valid config or every problem in it."""

    path: Path
    text: str
    config: SiteConfig | None
    problems: tuple[Problem, ...]


# No setting nests deeper than a few tables; tomllib is recursive, and a file nesting
# arrays or inline tables thousands deep would exhaust the stack (RecursionError).
MAX_TOML_DEPTH = 32


def load_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads`` with a nesting limit: too deep is a ``TOMLDecodeError`` like any other."""
    too_deep = f"values nested more than {MAX_TOML_DEPTH} levels deep"
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError(too_deep) from None
    # Walked with a list, not recursion: whatever reads the values later must not hit the limit either.
    pending: list[tuple[object, int]] = [(raw, 0)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_TOML_DEPTH:
            raise tomllib.TOMLDecodeError(too_deep)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        pending.extend((child, depth + 1) for child in children)
    return raw


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


def problems_from(exc: ValidationError, path: Path, text: str) -> list[Problem]:
    """One :class:`Problem` per pydantic error, worded for the person editing the file."""
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
                    message = f"secrets are never read from this file; {SECRET_KEYS[key]}"
                    found.append(Problem(path, locate(text, (*loc, key)), ".".join((*loc, key)), message))
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for item in node:
                walk(item, loc)

    walk(raw, ())
    return found


def read_config(site_dir: Path) -> ConfigFile:
    """Parse and validate ``newsletter.toml``; the config, or every problem found in it."""
    path = site_dir / CONFIG_FILE
    if not path.is_file():
        raise SiteError(
            f"{site_dir} is not a newsletter site: {CONFIG_FILE} is missing "
            "(create one with `newsletter init DIR`, or pass --site DIR)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return ConfigFile(path, "", None, (Problem(path, None, "", f"not UTF-8 text ({exc.reason})"),))
    except OSError as exc:
        return ConfigFile(path, "", None, (Problem.unreadable(path, exc),))
    return parse_config(path, text)


def parse_config(path: Path, text: str) -> ConfigFile:
    """Parse and validate the text of ``newsletter.toml`` as :func:`read_config` does.

    The workspace's editor validates the text it is about to write with this, so a
    change that ``newsletter check`` would refuse is refused before the file is touched.
    """
    try:
        raw = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        problem = Problem(path, int(line.group(1)) if line else None, "", f"invalid TOML: {exc}")
        return ConfigFile(path, text, None, (problem,))
    config, problems = _validate(raw, path, text)
    return ConfigFile(path, text, config, tuple(problems))


def _validate(raw: dict[str, Any], path: Path, text: str) -> tuple[SiteConfig | None, list[Problem]]:
    problems = _secret_problems(raw, path, text)
    for table in ("site", "database", "delivery", "smtp"):
        section = raw.get(table)
        if isinstance(section, dict):
            for key in SECRET_KEYS.keys() & section.keys():
                del section[key]
    hooks = raw.get("webhooks")
    for hook in hooks if isinstance(hooks, list) else []:
        if isinstance(hook, dict):
            hook.pop("secret", None)
    try:
        config = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        return None, problems + problems_from(exc, path, text)
    known = set(config.groups)
    names: set[str] = set()
    for index, source in enumerate(config.sources):
        if source.name in names:
            problems.append(
                Problem(
                    path,
                    locate(text, ("sources", index, "name")),
                    f"sources.{source.name}.name",
                    f"two sources are named {source.name!r}; give each source a name of its own",
                )
            )
        names.add(source.name)
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
    for index, hook in enumerate(config.webhooks):
        for slug in hook.groups:
            if slug not in known:
                problems.append(
                    Problem(
                        path,
                        locate(text, ("webhooks", index, "groups")),
                        f"webhooks.{hook.name}.groups",
                        f"unknown group {slug!r} (known: {', '.join(sorted(known))})",
                    )
                )
    return (None if problems else config), problems
