"""The topics a member chooses to receive from a group (WIPO, EPO, IP5, events...).

What a group offers: the topics declared for it (``[groups.SLUG] topics``), else the
topics of the sources that feed it and of the items its editions have carried. A
member picks some on the preferences page; the choice is kept on the membership as a
JSON list (``Membership.topics``). No choice (NULL) is everything, and so is a choice
of every offered topic, which is stored as no choice: a member who ticks every box
also gets the topics added later.

Delivery (``delivery/variants.py``) reads the choice back with :func:`parse` and
leaves out of the member's copy every item whose topic they did not choose; an item
without a topic goes to everyone. Topics compare without regard to case ("wipo" is
"WIPO").
"""

import json
from collections.abc import Iterable

from sqlmodel import Session, col, select

from newsletter.core.models import EditionItem, Group, Item
from newsletter.core.settings import Settings

# Bounds on what a form may send: a page offers a handful of topics.
MAX_TOPICS = 50
MAX_TOPIC_LENGTH = 80


def key(topic: str) -> str:
    """The form topics are compared in."""
    return topic.strip().casefold()


def offered(session: Session, settings: Settings, group: Group) -> list[str]:
    """The topics a member of ``group`` may choose among, in a stable order."""
    declared = settings.group(group.slug).topics if group.slug in settings.groups else ()
    if declared:
        return _unique(declared)
    found = [
        source.topic for source in settings.sources if "*" in source.groups or group.slug in source.groups
    ]
    carried = session.exec(
        select(Item.topic)
        .join(EditionItem, col(EditionItem.item_id) == Item.id)
        .where(col(EditionItem.group_id) == group.id, col(Item.topic) != "")
        .distinct()
    )
    found += list(carried)
    return sorted(_unique(found), key=key)


def stored(chosen: list[str], offered_topics: list[str]) -> str | None:
    """The value kept on the membership: the chosen offered topics as JSON, or None for everything.

    Only offered topics are kept (a forged form cannot add others); choosing all of
    them, or none at all, is no choice.
    """
    by_key = {key(topic): topic for topic in offered_topics}
    picked = _unique(by_key[key(t)] for t in chosen[:MAX_TOPICS] if key(t[:MAX_TOPIC_LENGTH]) in by_key)
    if not picked or len(picked) == len(by_key):
        return None
    return json.dumps(sorted(picked, key=key), ensure_ascii=False)


def parse(value: str | None) -> frozenset[str] | None:
    """The stored choice as a set of topic keys; None for no choice (everything)."""
    if not value:
        return None
    try:
        topics = json.loads(value)
    except ValueError:
        return None
    if not isinstance(topics, list):
        return None
    chosen = frozenset(key(t) for t in topics if isinstance(t, str) and t.strip())
    return chosen or None


def _unique(topics: Iterable[str]) -> list[str]:
    """Non-empty topics, the first spelling of each, in order."""
    seen: dict[str, str] = {}
    for topic in topics:
        if topic.strip():
            seen.setdefault(key(topic), topic.strip())
    return list(seen.values())
