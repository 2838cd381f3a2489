"""Delivering the queue: claim a due row, sign it, POST it, record the answer.

Each row is claimed on its own under a lease (a conditional update of ``lease_until``
and ``lease_owner``), posted outside any transaction, and its answer recorded only by
the process that still holds the lease. A 2xx answer delivers it for good; anything
else (another status, a refusal by the address policy, a timeout, no connection)
counts as an attempt and the row waits :func:`backoff` (30 s doubling, at most 6
hours) before the next, until the endpoint's ``max_attempts``, after which it is
``failed`` and kept for the lists. When an endpoint cannot be reached at all, its
other rows wait for the next round instead of each taking a timeout now.

Every POST goes through the safe fetcher (``collecting/fetch.py``): the endpoint's
address is checked against the same policy as a feed's (private and loopback
addresses refused unless ``allow_private``), one deadline of the endpoint's
``timeout`` covers it, no redirect is followed, and only the first
:data:`RESPONSE_BYTES` of the answer are read.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlmodel import col, or_, select, update

from newsletter.core.credentials import webhook_key
from newsletter.core.errors import ConfigError, FetchError, FetchRefused
from newsletter.core.models import WebhookDelivery, WebhookStatus, utcnow
from newsletter.core.sections import WebhookConfig
from newsletter.core.settings import Settings
from newsletter.core.site import Site
from newsletter.delivery.webhooks import signing
from newsletter.delivery.webhooks.dispatch import dispatch

if TYPE_CHECKING:
    from newsletter.collecting.fetch import AddressPolicy, FetchLimits, Response

log = logging.getLogger(__name__)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=6)
# How much of an answer is read, and how much of it is kept to be shown.
RESPONSE_BYTES = 4096
KEPT_CHARACTERS = 1000
# A claim lasts the POST's own timeout and this much more.
LEASE_SLACK = timedelta(seconds=60)


class Poster(Protocol):
    """What delivery needs from the network: one address-checked, bounded POST."""

    def post(
        self,
        url: str,
        body: bytes,
        *,
        policy: AddressPolicy,
        limits: FetchLimits,
        headers: Mapping[str, str] | None = None,
    ) -> Response: ...


@dataclass
class RoundReport:
    """What one round did: deliveries queued, delivered, to be retried, given up."""

    queued: int = 0
    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        found = [f"webhooks: {self.queued} delivery(ies) queued"] if self.queued else []
        found += [f"webhooks: delivered {line}" for line in self.delivered]
        found += [f"webhooks: will retry {line}" for line in self.retrying]
        return found + [f"webhooks: gave up {line}" for line in self.given_up]


@dataclass(frozen=True)
class _Claimed:
    id: int
    endpoint: str
    message_id: str
    topic: str
    body: str
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    response: str
    error: str
    reached: bool

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def backoff(attempts: int) -> timedelta:
    """How long a row waits after its ``attempts``-th failed attempt."""
    doublings: int = max(0, min(attempts - 1, 30))
    return min(BACKOFF_CAP, BACKOFF_FIRST * (1 << doublings))


def run(site: Site, now: datetime | None = None, *, poster: Poster | None = None) -> RoundReport:
    """One round: dispatch the captured events, then deliver what is due (daemon, CLI)."""
    queued = dispatch(site)
    report = deliver(site, now, poster=poster)
    report.queued = queued
    return report


def deliver(
    site: Site,
    now: datetime | None = None,
    *,
    poster: Poster | None = None,
    limit: int = 500,
    should_stop: Callable[[], bool] = lambda: False,
) -> RoundReport:
    """Post the due deliveries (at most ``limit``), each claimed, signed, posted and recorded."""
    settings = site.settings
    hooks = {hook.name: hook for hook in settings.webhooks}
    report = RoundReport()
    report.given_up += _orphans(site, hooks, now or utcnow())
    # Made, and the HTTP client loaded, at the first claim: loading the TLS context is
    # slow, and most rounds post nothing.
    sender = poster
    owner = secrets.token_hex(16)
    unreachable: set[str] = set()
    for _ in range(limit):
        if should_stop():
            break
        moment = now or utcnow()
        claimed = _claim(site, moment, owner, hooks, unreachable)
        if claimed is None:
            break
        hook = hooks[claimed.endpoint]
        if sender is None:
            from newsletter.collecting.fetch import HttpFetcher

            sender = HttpFetcher()
        outcome = _attempt(sender, settings, hook, claimed)
        if not outcome.reached:
            unreachable.add(hook.name)
        line = f"{claimed.topic} to {hook.name} ({_said(outcome)})"
        final = _record(site, claimed, outcome, hook, owner, now or utcnow())
        if outcome.delivered:
            report.delivered.append(line)
        elif final:
            report.given_up.append(line)
        else:
            report.retrying.append(line)
    return report


def _orphans(site: Site, hooks: Mapping[str, WebhookConfig], now: datetime) -> list[str]:
    """Queued deliveries to an endpoint no longer in the site's configuration: given up, said why.

    Nothing would ever post them, and they would show as waiting for ever.
    """
    reason = "the endpoint is no longer in the site's configuration"
    with site.transaction() as session:
        rows = session.exec(
            select(WebhookDelivery.endpoint, WebhookDelivery.topic).where(
                col(WebhookDelivery.status) == WebhookStatus.QUEUED,
                col(WebhookDelivery.endpoint).not_in(list(hooks)),
            )
        ).all()
        if rows:
            session.execute(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.status) == WebhookStatus.QUEUED,
                    col(WebhookDelivery.endpoint).not_in(list(hooks)),
                )
                .values(status=WebhookStatus.FAILED, last_error=reason, last_attempt_at=now)
            )
    return [f"{topic} to {endpoint} ({reason})" for endpoint, topic in rows]


def _said(outcome: _Outcome) -> str:
    return f"HTTP {outcome.status}" if outcome.status is not None else outcome.error


def _claim(
    site: Site, now: datetime, owner: str, hooks: Mapping[str, WebhookConfig], unreachable: set[str]
) -> _Claimed | None:
    names = [name for name in hooks if name not in unreachable]
    if not names:
        return None
    free = or_(col(WebhookDelivery.lease_until).is_(None), col(WebhookDelivery.lease_until) < now)
    with site.transaction() as session:
        row = session.exec(
            select(WebhookDelivery)
            .where(
                col(WebhookDelivery.status) == WebhookStatus.QUEUED,
                col(WebhookDelivery.next_attempt_at) <= now,
                col(WebhookDelivery.endpoint).in_(names),
                free,
            )
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        lease = now + timedelta(seconds=hooks[row.endpoint].timeout) + LEASE_SLACK
        taken = session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == row.id, free)
            .values(lease_until=lease, lease_owner=owner)
        )
        if getattr(taken, "rowcount", 0) != 1:
            return None
        return _Claimed(row.id or 0, row.endpoint, row.message_id, row.topic, row.body, row.attempts)


def _attempt(poster: Poster, settings: Settings, hook: WebhookConfig, claimed: _Claimed) -> _Outcome:
    try:
        key = webhook_key(settings, hook)
    except ConfigError as exc:
        return _Outcome(None, "", str(exc), reached=True)
    from newsletter.collecting.fetch import AddressPolicy, FetchLimits

    body = claimed.body.encode("utf-8")
    limits = FetchLimits(
        max_bytes=RESPONSE_BYTES,
        timeout=hook.timeout,
        max_redirects=0,
        connect_timeout=min(5.0, hook.timeout),
    )
    try:
        answer = poster.post(
            hook.url,
            body,
            policy=AddressPolicy(allow_private=hook.allow_private),
            limits=limits,
            headers=signing.headers(key, claimed.message_id, int(time.time()), body),
        )
    except FetchRefused as exc:
        return _Outcome(None, "", str(exc), reached=True)
    except FetchError as exc:
        return _Outcome(None, "", str(exc), reached=False)
    shown = answer.body.decode("utf-8", errors="replace")[:KEPT_CHARACTERS]
    return _Outcome(answer.status, shown, "", reached=True)


def _record(
    site: Site, claimed: _Claimed, outcome: _Outcome, hook: WebhookConfig, owner: str, now: datetime
) -> bool:
    """Write the attempt's result; True when the row is now final (delivered or given up)."""
    attempts = claimed.attempts + 1
    values: dict[str, object] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status": outcome.status,
        "last_response": outcome.response,
        "last_error": outcome.error[:KEPT_CHARACTERS],
        "lease_until": None,
        "lease_owner": None,
    }
    final = True
    if outcome.delivered:
        values |= {"status": WebhookStatus.DELIVERED, "delivered_at": now}
    elif attempts >= hook.max_attempts:
        values |= {"status": WebhookStatus.FAILED}
    else:
        values |= {"next_attempt_at": now + backoff(attempts)}
        final = False
    with site.transaction() as session:
        done = session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == claimed.id, col(WebhookDelivery.lease_owner) == owner)
            .values(**values)
        )
        if getattr(done, "rowcount", 0) != 1:
            log.warning(
                "webhook delivery %s: its lease was taken over; its result was not recorded", claimed.id
            )
    return final
