"""A CSV uploaded in the workspace: planned first, imported only when the editor confirms that plan.

:func:`plan` keeps the file (``subscriber_upload``, under a random id, for an hour) and
answers the import's dry run: each row's verdict, nothing written. :func:`confirm`
plans the kept file again, in the transaction that will import it: if the plan is still
the one the editor saw (its digest), the file is imported and must do exactly that; if
the list changed meanwhile, nothing is written and the new plan is shown instead.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from newsletter.audience.subscribers import ImportReport, import_data
from newsletter.core.errors import NotFoundError, StateError
from newsletter.core.models import SubscriberUpload
from newsletter.core.settings import Settings
from newsletter.core.site import get_group

LIFETIME = timedelta(hours=1)
# 5 MB holds well over 100,000 rows of address, name and language.
MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Planned:
    upload_id: str
    report: ImportReport


@dataclass(frozen=True)
class Confirmed:
    """``applied``: the file was imported as planned; else ``report`` is the new plan to show."""

    applied: bool
    report: ImportReport
    upload_id: str


def plan(
    session: Session,
    settings: Settings,
    group_slug: str,
    data: bytes,
    filename: str,
    *,
    user_id: int,
    actor: str,
    now: datetime,
) -> Planned:
    """Plan the import of ``data`` (nothing written to the group) and keep the file for :func:`confirm`.

    A file that cannot be read as a subscriber CSV raises ImportFileError and is not kept.
    """
    group = get_group(session, settings, group_slug)
    session.execute(delete(SubscriberUpload).where(col(SubscriberUpload.expires_at) < now))
    report = import_data(session, settings, group_slug, data, filename, actor=actor, dry_run=True)
    upload = SubscriberUpload(
        id=secrets.token_urlsafe(24),
        group_id=group.id or 0,
        user_id=user_id,
        filename=filename[:200],
        content=data,
        plan_digest=report.digest(),
        created_at=now,
        expires_at=now + LIFETIME,
    )
    session.add(upload)
    return Planned(upload.id, report)


def confirm(
    session: Session,
    settings: Settings,
    group_slug: str,
    upload_id: str,
    digest: str,
    *,
    user_id: int,
    actor: str,
    now: datetime,
) -> Confirmed:
    """Import the kept file if its plan is still ``digest``; otherwise keep it with its new plan.

    Only the person who uploaded it, on the same group, within its lifetime, may
    confirm it (anyone else: NotFoundError). It is imported once: the row goes with it.
    """
    group = get_group(session, settings, group_slug)
    upload = session.exec(
        select(SubscriberUpload)
        .where(
            SubscriberUpload.id == upload_id,
            SubscriberUpload.group_id == group.id,
            SubscriberUpload.user_id == user_id,
        )
        # A double click's second request waits here for the first, then finds the row gone.
        .with_for_update()
    ).one_or_none()
    if upload is None or upload.expires_at < now:
        raise NotFoundError("this upload is no longer kept; upload the file again")
    replanned = import_data(
        session, settings, group_slug, upload.content, upload.filename, actor=actor, dry_run=True
    )
    if replanned.digest() != digest or digest != upload.plan_digest:
        upload.plan_digest = replanned.digest()
        upload.expires_at = now + LIFETIME
        session.add(upload)
        return Confirmed(False, replanned, upload.id)
    applied = import_data(session, settings, group_slug, upload.content, upload.filename, actor=actor)
    if applied.digest() != digest:
        # A bug, not a user's mistake: the caller's transaction rolls the import back.
        raise StateError("the import did not do what its plan said; nothing was imported")
    session.delete(upload)
    return Confirmed(True, applied, upload.id)
