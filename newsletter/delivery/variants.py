"""An edition's copies by the topics members chose: rendered once per distinct choice, not per member.

A member may choose some of their group's topics (``audience/topics.py``); their copy
of an edition leaves out the items of every other topic (an item without a topic
stays in every copy). Rendering per recipient would cost milliseconds each (see
docs/performance.md), so copies are grouped: what a member gets depends only on the
topics they chose *among the topics this edition carries*, so members whose choices
differ only in topics the edition does not carry share one copy, and a choice that
covers every topic of the edition is the full edition, rendered once in ``prepare``.

Each other distinct copy is rendered (every language, as the full edition) the
first time a member needs it, and its splicer (``splice.py``) is kept for the rest of
the send; after that a member costs one dictionary lookup more than before. A member
whose choice leaves no item at all gets no message: the engine records their row as
skipped (``engine.SKIP_REASON``).
"""

import dataclasses
from collections.abc import Callable, Mapping

from newsletter.audience import topics
from newsletter.core.models import Group
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer
from newsletter.delivery import splice
from newsletter.delivery.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.editions.build import render_languages
from newsletter.editions.render import EditionContent, PoolItem, Rendered, Renderer

# A copy: the topic keys it keeps (None: the full edition).
Copy = frozenset[str] | None


class Variants:
    """Builds each member's message from the copy their topics select; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        renderer: Renderer,
        group: Group,
        content: EditionContent,
        parts: Mapping[str, Rendered],
        *,
        allow_large: bool,
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.group = group
        self.content = content
        self.allow_large = allow_large
        # The topics the edition carries, by key.
        self.carried = frozenset(topics.key(i.topic) for i in content.items if i.topic.strip())
        self._builders: dict[Copy, Callable[[Recipient], OutgoingMessage]] = {
            None: splice.builder(self._factory(parts), defer_signature=True)
        }
        # A stored choice (the JSON text) -> its copy, so a member costs one lookup.
        self._copies: dict[str | None, Copy] = {None: None}
        # Whether a copy keeps no item at all, by copy (asked once per member).
        self._empty: dict[frozenset[str], bool] = {}
        # Renders of the edition made for this send: the full one, then one per other copy.
        self.renders = 1

    def copy(self, stored: str | None) -> Copy:
        """The copy for a member's stored choice of topics."""
        try:
            return self._copies[stored]
        except KeyError:
            pass
        chosen = topics.parse(stored)
        found: Copy = None
        if chosen is not None and not self.carried <= chosen:
            found = chosen & self.carried
        self._copies[stored] = found
        return found

    def skip(self, stored: str | None) -> bool:
        """Whether the member's choice leaves no item of the edition in their copy."""
        kept = self.copy(stored)
        if kept is None:
            return False
        empty = self._empty.get(kept)
        if empty is None:
            empty = self._empty[kept] = not self._items(kept)
        return empty

    def build(self, recipient: Recipient) -> OutgoingMessage:
        kept = self.copy(recipient.topics)
        builder = self._builders.get(kept)
        if builder is None:
            # Only a copy that leaves something out is missing: the full one is made first.
            assert kept is not None
            builder = self._builders[kept] = self._render(kept)
        return builder(recipient)

    def _items(self, kept: frozenset[str]) -> list[PoolItem]:
        """The items a copy keeps: those of its topics, and those without a topic."""
        return [i for i in self.content.items if not i.topic.strip() or topics.key(i.topic) in kept]

    def _render(self, kept: frozenset[str]) -> Callable[[Recipient], OutgoingMessage]:
        content = dataclasses.replace(self.content, items=self._items(kept))
        parts = render_languages(self.renderer, self.settings, content, allow_large=self.allow_large)
        self.renders += 1
        return splice.builder(self._factory(parts), defer_signature=True)

    def _factory(self, parts: Mapping[str, Rendered]) -> MessageFactory:
        return MessageFactory(
            self.settings,
            Signer(self.settings.signing_key),
            edition_id=self.content.edition_id,
            group_id=self.group.id or 0,
            group_slug=self.group.slug,
            group_name=self.group.name,
            parts=parts,
        )
