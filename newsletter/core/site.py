"""The site: resolved settings plus the database they point at.

A site is a folder (``newsletter.toml``, ``templates/``, ``subscribers/``,
``schedules/``). Opening it checks that the database is at the revision this code
needs (it never migrates: :func:`migrate_site` does, for ``newsletter migrate``) and
brings the ``group`` table in line with the groups the file declares, so every
command sees the same groups.
"""

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.core.configfile import parse_config
from newsletter.core.db import Migration, make_engine, migrate, require_current, transaction
from newsletter.core.errors import ConflictError, NotFoundError
from newsletter.core.models import Group
from newsletter.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    settings: Settings
    engine: Engine

    @classmethod
    def open(cls, settings: Settings) -> "Site":
        """The site on its database; a DatabaseError saying to migrate if the schema is behind."""
        engine = make_engine(settings.database_url)
        try:
            require_current(engine)
        except BaseException:
            engine.dispose()
            raise
        site = cls(settings, engine)
        try:
            site._sync_groups()
        except BaseException:
            engine.dispose()
            raise
        return site

    def _sync_groups(self) -> None:
        # Two processes opening a fresh database at once (two daemons, a daemon and a
        # worker) may both insert the same new group; the loser's unique-key conflict
        # means the row now exists, so one more pass updates it instead of inserting.
        for attempt in range(3):
            try:
                with self.transaction() as session:
                    sync_groups(session, self.settings)
                return
            except ConflictError:
                if attempt == 2:
                    raise

    @property
    def root(self) -> Path:
        return self.settings.site_dir

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.engine) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def migrate_site(settings: Settings) -> Migration:
    """Apply the migrations the site's database lacks, under the migration lock."""
    engine = make_engine(settings.database_url)
    try:
        return migrate(engine)
    finally:
        engine.dispose()


def sync_groups(session: Session, settings: Settings) -> None:
    """Create or update a ``group`` row for each group declared in the settings."""
    rows = {g.slug: g for g in session.exec(select(Group))}
    for slug, config in settings.groups.items():
        row = rows.get(slug) or Group(
            slug=slug, name=config.name, language=config.language, timezone=config.timezone
        )
        row.name, row.language, row.timezone = config.name, config.language, config.timezone
        session.add(row)


def get_group(session: Session, settings: Settings, slug: str) -> Group:
    """The row of a declared group; an unknown slug is a :class:`NotFoundError`."""
    settings.group(slug)
    group = session.exec(select(Group).where(Group.slug == slug)).one_or_none()
    if group is None:
        raise NotFoundError(f"group {slug!r} is not in the database yet; run any command to sync")
    return group


FileKey = tuple[int, int, int] | None


def file_key(path: Path) -> FileKey:
    """What tells that a file changed without reading it: inode, size, modification time.

    An edit by the workspace replaces the file (a new inode); an edit in place by an
    editor or ``git pull`` changes the time or the size. None: the file is not there.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class LiveSite:
    """A site whose declared sources follow ``newsletter.toml`` while the process runs.

    The workspace edits ``[[sources]]`` in the file (``operations/siteedit.py``); the
    running ``serve`` and ``daemon`` see the change through this: each :meth:`current`
    looks at the file's :func:`file_key` (one ``stat``), and when it changed reads and
    validates the file again (as ``newsletter check`` does) and takes its sources. Only
    the sources are taken: the database, the transport and the other settings were
    resolved once with the environment and the command line, and a change to them
    still needs a restart. A file that no longer validates (a bad hand edit) is logged
    once and the last good sources are kept. Schedules need none of this: every tick
    and page reads ``schedules/`` afresh.
    """

    def __init__(self, site: Site) -> None:
        self._base = site
        self._site = site
        self._path = site.settings.config_file
        # Not the file's key: the site may have been opened before the file last changed,
        # so the first look reads the file.
        self._key: FileKey = (-1, -1, -1)
        self._lock = threading.Lock()

    def current(self) -> Site:
        """The site with the sources the file declares now."""
        key = file_key(self._path)
        if key == self._key:
            return self._site
        with self._lock:
            if key != self._key:
                self._reload(key)
            return self._site

    def _reload(self, key: FileKey) -> None:
        self._key = key
        try:
            text = self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning(
                "%s changed but cannot be read (%s); keeping the sources read before", self._path, exc
            )
            return
        parsed = parse_config(self._path, text)
        if parsed.config is None or parsed.problems:
            first = parsed.problems[0] if parsed.problems else "invalid"
            log.warning(
                "%s changed but is not valid (%s); keeping the sources read before", self._path, first
            )
            return
        if parsed.config.sources != self._site.settings.sources:
            log.info("%s changed: %d source(s) now", self._path, len(parsed.config.sources))
            settings = dataclasses.replace(self._base.settings, sources=parsed.config.sources)
            self._site = dataclasses.replace(self._base, settings=settings)
