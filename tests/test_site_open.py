"""Opening a site while another process opens it too."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from newsletter.core import site as site_module
from newsletter.core.db import make_engine
from newsletter.core.models import Group
from newsletter.core.settings import Settings, load_settings


def test_open_survives_a_group_inserted_by_another_process(
    site_dir: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two daemons opening a fresh database both insert the new groups; the loser retries."""
    settings = load_settings(site_dir, env={}, overrides={"database.url": db_url})
    slug = next(iter(settings.groups))
    real_sync = site_module.sync_groups
    raced: list[bool] = []

    def racing_sync(session: Session, settings: Settings) -> None:
        real_sync(session, settings)  # reads the table (empty) and stages the inserts
        if not raced:
            raced.append(True)
            other = make_engine(db_url)  # the other process commits the same group first
            with other.begin() as conn:
                conn.execute(
                    text(
                        'INSERT INTO "group" (slug, name, language, timezone, created_at)'
                        " VALUES (:slug, 'x', 'en', 'UTC', :now)"
                    ),
                    {"slug": slug, "now": datetime.now(UTC)},
                )
            other.dispose()

    monkeypatch.setattr(site_module, "sync_groups", racing_sync)
    site = site_module.Site.open(settings)
    try:
        with site.transaction() as session:
            rows = session.exec(select(Group).where(Group.slug == slug)).all()
    finally:
        site.close()
    assert raced == [True]
    assert [(g.name, g.language) for g in rows] == [
        (settings.groups[slug].name, settings.groups[slug].language)
    ]
