"""Editing the site's sources and schedules from the workspace, in the files that declare them.

Sources are ``[[sources]]`` tables in ``newsletter.toml``; schedules are the files of
``schedules/``. Both stay the site's truth (they are under version control), so an
admin's change in the browser is a change to those files, made so that the rest of
each file survives as the person who wrote it left it:

- the file is edited with tomlkit, which keeps comments, order and layout;
- the new text is validated with the loader ``newsletter check`` uses
  (``core/configfile.parse_config``; ``operations/check.check_schedule_text``) before
  anything is written, and a problem is an :class:`InputError` naming it;
- the form carries the :func:`version` (a hash of the file's bytes) it was shown with,
  and a file changed since (by another admin, by hand, by ``git pull``) refuses the change
  with :class:`StaleRecord`;
- the file is replaced atomically (a temporary file in the same folder, then
  ``os.replace``), under an exclusive lock on the site folder, so two processes never
  interleave their edits;
- the audit log names the person and what changed, in the same transaction.

The running processes see the change through ``core/site.LiveSite`` (sources) and by
reading ``schedules/`` at every tick and page (schedules).
"""

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table

from newsletter.core import audit
from newsletter.core.configfile import Problem, parse_config
from newsletter.core.errors import InputError, NotFoundError, StaleRecord, file_error
from newsletter.core.messages import Message
from newsletter.core.sections import SLUG
from newsletter.core.site import Site
from newsletter.operations.check import check_schedule_text
from newsletter.scheduling.schedules import SCHEDULES_DIR

# What a form carries for a file that is not there (a schedule not yet made).
ABSENT = "absent"
MAX_TEXT = 500


def version(path: Path) -> str:
    """The version of a file as a form shows it: a hash of its bytes (``absent`` if missing)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ABSENT
    except OSError as exc:
        raise file_error(exc, "cannot read", path) from exc


@dataclass(frozen=True)
class SourceForm:
    """A source as an admin filled it in (text as posted; checked by :class:`SiteEditor`)."""

    name: str
    url: str
    topic: str = ""
    groups: tuple[str, ...] = ()
    approval: str = "editor"
    since_days: str = ""
    language: str = "en"
    interval_minutes: str = "60"
    allow_private: bool = False
    # A page source (a listing of article links read with trafilatura) instead of a feed.
    kind: str = "feed"
    link_selector: str = ""
    max_articles: str = "20"


@dataclass(frozen=True)
class ScheduleForm:
    """A schedule as an admin filled it in."""

    name: str
    cron: str
    groups: tuple[str, ...] = ()
    timezone: str = ""
    template: str = ""
    subject: str = ""
    skip_if_empty: bool = True
    approval: str = "editor"
    grace_hours: str = "6"


class SiteEditor:
    """Adds, changes and removes the site's sources and schedules for one person (``actor``)."""

    def __init__(self, site: Site, actor: str) -> None:
        self.site = site
        self.settings = site.settings
        self.actor = actor

    @property
    def config_file(self) -> Path:
        return self.settings.config_file

    def schedule_file(self, name: str) -> Path:
        if not SLUG.match(name):
            raise NotFoundError("no schedule named '{name}'", name=name)
        return self.settings.site_dir / SCHEDULES_DIR / f"{name}.toml"

    # -- sources ---------------------------------------------------------------------------

    def add_source(self, form: SourceForm, seen: str) -> None:
        """Append a ``[[sources]]`` table; its name must be new."""
        if not SLUG.match(form.name):
            raise InputError(
                "give the source a name of lower-case letters, digits, - or _ (it is used in addresses)"
            )
        values = self._source_values(form)
        with self._editing(self.config_file, seen) as text:
            document = _parse(self.config_file, text)
            tables = document.get("sources")
            if tables is None:
                tables = tomlkit.aot()
                document.append("sources", tables)
            elif not isinstance(tables, AoT):
                raise InputError(
                    "{file}: sources is not written as [[sources]] tables", file=self.config_file.name
                )
            if any(table.get("name") == form.name for table in tables):
                raise InputError(
                    "there is already a source named '{name}': choose another name", name=form.name
                )
            if len(tables) and not tables[-1].as_string().endswith("\n\n"):
                # A blank line between the last table and the new one, as people write them.
                tables[-1].add(tomlkit.nl())
            table = tomlkit.table()
            for key, value in values.items():
                if value is not None and (key in _ALWAYS or value != _SOURCE_DEFAULTS.get(key)):
                    table[key] = value
            tables.append(table)
            new_text = tomlkit.dumps(document)
            self._check_config(new_text)
            self._write(self.config_file, new_text, "source-add", form.name, values=_plain(values))

    def change_source(self, name: str, form: SourceForm, seen: str) -> None:
        """Change the source ``name`` in place (its name stays: fetch state and history hang on it)."""
        values = self._source_values(form)
        values.pop("name")
        with self._editing(self.config_file, seen) as text:
            document = _parse(self.config_file, text)
            table = _source_table(document, name)
            changes = _set(table, values, _SOURCE_DEFAULTS)
            if not changes:
                raise InputError("nothing was changed")
            new_text = tomlkit.dumps(document)
            self._check_config(new_text)
            self._write(self.config_file, new_text, "source-change", name, changes=changes)

    def remove_source(self, name: str, seen: str) -> None:
        """Take the source out of the file; its items and fetch history stay in the database."""
        with self._editing(self.config_file, seen) as text:
            document = _parse(self.config_file, text)
            tables = document.get("sources")
            table = _source_table(document, name)
            assert isinstance(tables, AoT)
            old = table.unwrap()
            tables.remove(table)
            if not len(tables):
                document.remove("sources")
            new_text = _same_ending(text, tomlkit.dumps(document))
            self._check_config(new_text)
            self._write(self.config_file, new_text, "source-remove", name, values=old)

    def _source_values(self, form: SourceForm) -> dict[str, Any]:
        groups = list(dict.fromkeys(form.groups))
        if not groups:
            raise InputError("choose the groups the source's items are for (or all groups)")
        if "*" in groups:
            groups = ["*"]
        kind = form.kind if form.kind in {"feed", "page"} else "feed"
        return {
            "name": form.name.strip(),
            "url": self._url(form.url),
            "topic": _text("topic", form.topic),
            "groups": groups,
            "approval": form.approval,
            "since_days": _whole("since_days", form.since_days, optional=True),
            "language": _text("language", form.language) or "en",
            "interval_minutes": _whole("interval_minutes", form.interval_minutes),
            "allow_private": bool(form.allow_private),
            "kind": kind,
            "link_selector": (_text("link_selector", form.link_selector) or None) if kind == "page" else None,
            "max_articles": _whole("max_articles", form.max_articles) if kind == "page" else None,
        }

    def _url(self, value: str) -> str:
        """An http(s) URL, or a file in the site folder by its relative path (as the example's feeds).

        The file may say more (an absolute path, ``file://``), but a browser form may not
        point the collector at any file of the server.
        """
        url = value.strip()
        if not url:
            raise InputError("give the feed's address, such as https://example.org/feed.xml")
        if any(ch.isspace() or ord(ch) < 32 for ch in url) or len(url) > 2000:
            raise InputError(
                "'{url}' is not a feed address such as https://example.org/feed.xml", url=url[:100]
            )
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise InputError(
                "'{url}' is not a feed address such as https://example.org/feed.xml", url=url
            ) from None
        if parts.scheme:
            if parts.scheme.lower() not in {"http", "https"} or not host:
                raise InputError(
                    "'{url}' is not an http:// or https:// address such as https://example.org/feed.xml",
                    url=url,
                )
            return url
        site_dir = self.settings.site_dir.resolve()
        local = (site_dir / url).resolve()
        if Path(url).is_absolute() or not local.is_relative_to(site_dir) or not local.is_file():
            raise InputError(
                "'{url}' is not an https:// address, nor a file in the site folder "
                "(give a path relative to it, such as samples/feeds/news.xml)",
                url=url,
            )
        return url

    def _check_config(self, text: str) -> None:
        parsed = parse_config(self.config_file, text)
        if parsed.problems or parsed.config is None:
            problem = _worded(parsed.problems, "sources.")
            raise InputError(problem)

    # -- schedules -------------------------------------------------------------------------

    def save_schedule(self, form: ScheduleForm, seen: str, *, new: bool) -> None:
        """Write ``schedules/NAME.toml``: a new file (``new``), or the keys of the existing one."""
        path = self.schedule_file(form.name) if SLUG.match(form.name) else None
        if path is None:
            raise InputError(
                "give the schedule a name of lower-case letters, digits, - or _ (its file's name)"
            )
        values = self._schedule_values(form)
        if new:
            seen = ABSENT
            if path.exists():
                raise InputError(
                    "there is already a schedule named '{name}': choose another name", name=form.name
                )
        elif not path.exists():
            raise NotFoundError("no schedule named '{name}'", name=form.name)
        with self._editing(path, seen) as text:
            document = _parse(path, text) if text else tomlkit.document()
            if new:
                _set(document, values, {})
                kind, detail = "schedule-add", {"values": _plain(values)}
            else:
                changes = _set(document, values, _SCHEDULE_DEFAULTS)
                if not changes:
                    raise InputError("nothing was changed")
                kind, detail = "schedule-change", {"changes": changes}
            new_text = tomlkit.dumps(document)
            problems = check_schedule_text(self.settings, path, new_text)
            if problems:
                problem = _worded(problems, "")
                raise InputError(problem)
            self._write(path, new_text, kind, form.name, **detail)

    def remove_schedule(self, name: str, seen: str) -> None:
        """Delete ``schedules/NAME.toml``; the editions it built stay."""
        path = self.schedule_file(name)
        if not path.exists():
            raise NotFoundError("no schedule named '{name}'", name=name)
        with self._editing(path, seen) as text:
            old = _parse(path, text).unwrap()
            with self.site.transaction() as session:
                audit.record(
                    session, "schedule-remove", actor=self.actor, source="web", name=name, values=old
                )
                try:
                    path.unlink()
                except OSError as exc:
                    raise file_error(exc, "cannot remove", path) from exc

    def _schedule_values(self, form: ScheduleForm) -> dict[str, Any]:
        groups = list(dict.fromkeys(form.groups))
        if not groups:
            raise InputError("choose the groups the schedule builds editions for")
        unknown = [slug for slug in groups if slug not in self.settings.groups]
        if unknown:
            known = sorted(self.settings.groups)
            raise InputError("unknown group '{group}' (known: {known})", group=unknown[0], known=known)
        subject = _text("subject", form.subject)
        try:
            grace = float(form.grace_hours.strip() or "6")
        except ValueError:
            raise InputError("grace_hours: give a number of hours, such as 6") from None
        return {
            "cron": " ".join(form.cron.split()),
            "timezone": _text("timezone", form.timezone) or None,
            "groups": groups,
            "template": _text("template", form.template) or None,
            "subject": subject or "{{ group.name }}: news",
            "skip_if_empty": bool(form.skip_if_empty),
            "approval": form.approval,
            "grace_hours": int(grace) if grace.is_integer() else grace,
        }

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _editing(self, path: Path, seen: str) -> Iterator[str]:
        """The file's text, under the site's edit lock, if it is still the version ``seen``."""
        with _site_lock(self.settings.site_dir):
            now = version(path)
            if now != seen:
                raise StaleRecord(
                    "{file} was changed since this form was shown (by someone else, or by hand); "
                    "nothing was saved: reload the page and make the change again",
                    file=path.name,
                )
            try:
                text = path.read_text(encoding="utf-8") if now != ABSENT else ""
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(
                    "{file} cannot be read ({reason}); fix it by hand first", file=path.name, reason=str(exc)
                ) from None
            yield text

    def _write(self, path: Path, text: str, kind: str, name: str, **detail: Any) -> None:
        """Record the change and replace the file; a failed write rolls the record back."""
        relative = path.relative_to(self.settings.site_dir).as_posix()
        with self.site.transaction() as session:
            audit.record(session, kind, actor=self.actor, source="web", name=name, file=relative, **detail)
            write_atomically(path, text)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: readers see the old file or the new, never half of one.

    The temporary file is made in the same folder (``os.replace`` cannot cross file
    systems), synced, given the old file's permissions, then renamed over the old one.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise file_error(exc, "cannot write", path) from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise file_error(exc, "cannot write", path) from exc


@contextmanager
def _site_lock(site_dir: Path) -> Iterator[None]:
    """An exclusive lock on the site folder itself: one edit at a time across processes.

    Locking the folder (not a lock file) leaves nothing behind in a folder under version
    control; a lock on the edited file would not do, since the edit replaces it.
    """
    descriptor = os.open(site_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


# -- helpers ---------------------------------------------------------------------------------

_SOURCE_DEFAULTS: dict[str, Any] = {
    "topic": "",
    "groups": ["*"],
    "approval": "editor",
    "since_days": None,
    "language": "en",
    "interval_minutes": 60,
    "allow_private": False,
    "kind": "feed",
    "link_selector": None,
    "max_articles": 20,
}
_SCHEDULE_DEFAULTS: dict[str, Any] = {
    "timezone": None,
    "template": None,
    "subject": "{{ group.name }}: news",
    "skip_if_empty": True,
    "approval": "editor",
    "grace_hours": 6,
}
# Written for every new source, default or not: what a reader of the file looks for.
_ALWAYS = {"name", "url", "groups", "approval"}


def _parse(path: Path, text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise InputError(
            "{file} is not valid TOML ({reason}); fix it by hand first", file=path.name, reason=str(exc)
        ) from None


def _same_ending(old: str, new: str) -> str:
    """``new`` ending in as many newlines as ``old`` did (removing the last table leaves a blank line)."""
    ending = len(old) - len(old.rstrip("\n"))
    return new.rstrip("\n") + "\n" * ending if new.strip() else new


def _source_table(document: tomlkit.TOMLDocument, name: str) -> Table:
    tables = document.get("sources")
    if isinstance(tables, AoT):
        for table in tables:
            if isinstance(table, Table) and table.get("name") == name:
                return table
    raise NotFoundError("no source named '{name}'", name=name)


def _set(table: Any, values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, list[Any]]:
    """Write ``values`` into a tomlkit table in place; the changes as ``{key: [old, new]}``.

    A key already in the table is updated where it is (its comment stays); a new key is
    added only when it differs from the default, and a value of None takes the key out.
    """
    changes: dict[str, list[Any]] = {}
    for key, value in values.items():
        present = key in table
        old = _plain(table[key]) if present else defaults.get(key)
        if value is None:
            if present:
                del table[key]
                changes[key] = [old, None]
        elif present:
            if old != value:
                # tomlkit keeps the key's place and its trailing comment.
                table[key] = value
                changes[key] = [old, value]
        elif key not in defaults or value != defaults[key]:
            table[key] = value
            changes[key] = [old, value]
    return changes


def _plain(value: Any) -> Any:
    """A tomlkit value as plain Python (for comparing and for the audit log)."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _text(field: str, value: str) -> str:
    text = value.strip()
    if len(text) > MAX_TEXT or any(ord(ch) < 32 for ch in text):
        raise InputError("{field}: give one line of at most {limit} characters", field=field, limit=MAX_TEXT)
    return text


def _whole(field: str, value: str, *, optional: bool = False) -> int | None:
    text = value.strip()
    if not text and optional:
        return None
    try:
        return int(text)
    except ValueError:
        if optional:
            raise InputError("{field}: give a whole number, or leave it empty", field=field) from None
        raise InputError("{field}: give a whole number", field=field) from None


def _worded(problems: tuple[Problem, ...] | list[Problem], prefix: str) -> Message:
    """The first problem as one sentence for the page: the setting's name, then what is wrong.

    What is wrong is the loader's own English (``check`` prints the same words); the
    sentence around it is translated.
    """
    if not problems:
        return Message("the file would not be valid")
    problem = problems[0]
    key = problem.key
    if prefix and key.startswith(prefix):
        key = key.rsplit(".", 1)[-1]
    if not key:
        return Message(problem.message)
    return Message("{key}: {problem}", key=key, problem=problem.message)


__all__ = [
    "ABSENT",
    "ScheduleForm",
    "SiteEditor",
    "SourceForm",
    "version",
    "write_atomically",
]
