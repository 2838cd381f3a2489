"""The site: resolved settings plus the database they point at.

A site is a folder (``newsletter.toml``, ``templates/``, ``subscribers/``,
``schedules/``). Opening it checks that the database is at the revision this code
needs (it never migrates: :func:`migrate_site` does, for ``newsletter migrate``) and
brings the ``group`` table in line with the groups the file declares, so every
command sees the same groups.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.core.db import Migration, make_engine, migrate, require_current, transaction
from newsletter.core.errors import ConflictError, NotFoundError
from newsletter.core.models import Group
from newsletter.core.settings import Settings


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
