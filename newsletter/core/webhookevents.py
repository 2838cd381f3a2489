"""Which audit events are also webhook events, and under which name.

A webhook subscriber names the events it wants (``member.subscribed``, ...); they are
the audit log's own events, seen from outside. :func:`topic_of` maps an audit row
(its kind and detail) to one of :data:`TOPICS`, or to None for the many kinds nobody
outside needs (a sign-in, an item's edit). The mapping lives here, under everything,
because ``audit.record`` asks it while the change is still in its transaction: the
event is captured with the change or not at all (``delivery/webhooks/``).
"""

from collections.abc import Mapping
from typing import Any

# Topic -> what it means, in the words docs/configuration.md and the workspace show.
TOPICS: dict[str, str] = {
    "member.subscribed": "someone signed up (pending until confirmed) or was added to the group",
    "member.confirmed": "a pending member confirmed through the emailed link",
    "member.unsubscribed": "a member left the group",
    "member.bounced": "a membership ended because mail to it kept bouncing",
    "member.complained": "a membership ended because its owner reported an edition as spam",
    "item.proposed": "an item was proposed and waits for an editor",
    "edition.approved": "an edition was approved for sending",
    "edition.sent": "an edition was sent to every member",
    "edition.paused": "an edition's sending was paused (by a person, or because the relay kept failing)",
}

# Audit kinds that always mean one topic.
_BY_KIND = {
    "consent": "member.subscribed",
    "subscribe": "member.subscribed",
    "confirm": "member.confirmed",
    "unsubscribe": "member.unsubscribed",
    "edition-approve": "edition.approved",
    "edition-pause": "edition.paused",
    "item-proposed": "item.proposed",
}
# The runner's outcomes: news only when that record moved the edition (``moved``); the
# runner also notes an outcome another process brought about (a pause from the workspace).
_BY_OUTCOME = {"edition-sent": "edition.sent", "edition-paused": "edition.paused"}


def topic_of(kind: str, detail: Mapping[str, Any]) -> str | None:
    """The webhook topic an audit event of ``kind`` with ``detail`` is, or None.

    A bounce or complaint is a topic only when it ended the membership (a bounce that
    merely added to the score is not news outside); an item added to the pool only
    when it waits for review (an auto-approved feed entry is not a proposal); an
    edition's outcome only from the record that changed its status.
    """
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if kind in _BY_OUTCOME:
        return _BY_OUTCOME[kind] if detail.get("moved", True) else None
    if kind == "bounce" and detail.get("outcome") == "bounced":
        return "member.bounced"
    if kind == "complaint" and detail.get("outcome") == "complained":
        return "member.complained"
    if kind == "item-add" and detail.get("status") == "proposed":
        return "item.proposed"
    return None
