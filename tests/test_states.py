"""The transition tables: legal moves change the record, illegal ones raise and change nothing."""

import pytest

from newsletter.core import states
from newsletter.core.errors import StateError, TransitionError
from newsletter.core.models import (
    Edition,
    EditionStatus,
    Item,
    ItemKind,
    ItemStatus,
    Membership,
    MembershipStatus,
)


def _edition(status: EditionStatus) -> Edition:
    return Edition(id=7, group_id=1, schedule="manual", period_key="k", template="digest", status=status)


def test_an_edition_goes_from_draft_to_sent_only_through_approval_and_sending() -> None:
    edition = _edition(EditionStatus.DRAFT)
    for target in (
        EditionStatus.APPROVED,
        EditionStatus.SENDING,
        EditionStatus.PAUSED,
        EditionStatus.SENDING,
    ):
        assert states.move(edition, target) is True
        assert edition.status == target
    assert states.move(edition, EditionStatus.SENT) is True
    assert edition.status == EditionStatus.SENT


def test_an_illegal_move_raises_names_the_record_and_leaves_it_as_it_was() -> None:
    edition = _edition(EditionStatus.DRAFT)
    with pytest.raises(TransitionError, match=r"edition #7 is draft; it cannot become sending"):
        states.move(edition, EditionStatus.SENDING)
    assert edition.status == EditionStatus.DRAFT
    # A transition error is a state error: the CLI prints it as one line.
    assert issubclass(TransitionError, StateError)


def test_sent_and_cancelled_editions_are_final() -> None:
    for final in (EditionStatus.SENT, EditionStatus.CANCELLED):
        for target in EditionStatus:
            if target != final:
                assert not states.allowed(final, target)


def test_staying_in_the_same_state_changes_nothing() -> None:
    membership = Membership(id=1, subscriber_id=1, group_id=1, status=MembershipStatus.UNSUBSCRIBED)
    before = membership.status_changed_at
    assert states.move(membership, MembershipStatus.UNSUBSCRIBED) is False
    assert membership.status_changed_at == before


def test_a_bounced_membership_is_stamped_and_never_goes_back_to_pending_by_itself() -> None:
    membership = Membership(id=2, subscriber_id=1, group_id=1, status=MembershipStatus.ACTIVE)
    assert states.move(membership, MembershipStatus.BOUNCED)
    assert membership.status == MembershipStatus.BOUNCED
    assert membership.status_changed_at is not None
    with pytest.raises(TransitionError):
        states.move(
            Membership(id=3, subscriber_id=1, group_id=1, status=MembershipStatus.ACTIVE),
            MembershipStatus.PENDING,
        )


def test_items_move_between_review_states_and_back() -> None:
    item = Item(id=4, title="WIPO Inspire", kind=ItemKind.REPORT, status=ItemStatus.PROPOSED, fingerprint="f")
    assert states.move(item, ItemStatus.APPROVED)
    assert states.move(item, ItemStatus.REJECTED)
    assert item.status == ItemStatus.REJECTED
