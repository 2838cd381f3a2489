"""The transition tables: legal moves change the record, illegal ones raise and change nothing."""

import json

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
from tests.conftest import Cli


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


def test_only_a_confirmed_opt_in_makes_an_ended_membership_active() -> None:
    """Unsubscribed, bounced or complained back to active needs opt_in; without it nothing changes."""
    for ended in (MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED, MembershipStatus.COMPLAINED):
        membership = Membership(id=5, subscriber_id=1, group_id=1, status=ended)
        before = membership.status_changed_at
        with pytest.raises(
            TransitionError,
            match=rf"^membership #5 is {ended}; only a new confirmed opt-in can make it active$",
        ):
            states.move(membership, MembershipStatus.ACTIVE)
        assert (membership.status, membership.status_changed_at) == (ended, before)
        assert states.move(membership, MembershipStatus.ACTIVE, opt_in=True)
        assert membership.status == MembershipStatus.ACTIVE
    # An import may still activate a sign-up that was never confirmed.
    assert states.allowed(MembershipStatus.PENDING, MembershipStatus.ACTIVE)


# Through the real commands -----------------------------------------------------------------


def test_subscribers_add_cannot_make_an_unsubscribed_member_active(cli: Cli) -> None:
    """`subscribers add` for someone who unsubscribed is refused in one line and changes nothing."""
    cli("subscribers", "add", "uk", "raj.patel@example.org", "--name", "Raj Patel")
    cli("subscribers", "remove", "uk", "raj.patel@example.org")
    logged = len(cli.events())
    result = cli("subscribers", "add", "uk", "raj.patel@example.org", "--name", "Rajesh Patel", ok=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: raj.patel@example.org is unsubscribed from uk; "
        "only a new confirmed opt-in can subscribe them again"
    ]
    member = cli.members("uk")["raj.patel@example.org"]
    assert (member["status"], member["name"]) == ("unsubscribed", "Raj Patel")
    assert len(cli.events()) == logged


def item_id(cli: Cli, title: str) -> int:
    listed = json.loads(cli("items", "list", "--json").stdout)
    return int(next(row["id"] for row in listed if row["title"] == title))


def item_status(cli: Cli, identifier: int) -> str:
    return str(json.loads(cli("items", "show", str(identifier), "--json").stdout)["status"])


def test_an_item_an_unsent_edition_carries_cannot_be_rejected(cli: Cli) -> None:
    """Rejecting an item a draft edition carries is one error line changing no item, until it is cancelled."""
    for group in ("uk", "cepiug"):
        cli(
            "items", "add", "--approve", "--group", group, "--url", f"https://example.org/{group}",
            "--title", f"News for {group}",
        )  # fmt: skip
    carried, free = item_id(cli, "News for uk"), item_id(cli, "News for cepiug")
    edition_id = int(json.loads(cli("editions", "build", "uk", "--json").stdout)["id"])
    logged = len(cli.events())

    result = cli("items", "reject", str(free), str(carried), ok=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: item #{carried} is approved and edition #{edition_id} (draft) carries it; "
        f"it cannot become rejected unless that edition is cancelled first "
        f"(newsletter editions cancel {edition_id}); nothing was changed"
    ]
    assert (item_status(cli, free), item_status(cli, carried)) == ("approved", "approved")
    assert len(cli.events()) == logged

    # Once the edition is cancelled its items are free, and the move is legal.
    cli("editions", "cancel", str(edition_id))
    cli("items", "reject", str(carried))
    assert item_status(cli, carried) == "rejected"


def test_only_the_transition_tables_assign_a_status() -> None:
    """No module but core/states.py assigns `x.status = ...`: every change asks the tables."""
    import ast
    from pathlib import Path

    import newsletter

    package = Path(newsletter.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "states.py" or "versions" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                offenders += [
                    f"{path.relative_to(package)}:{node.lineno}"
                    for element in elements
                    if isinstance(element, ast.Attribute) and element.attr == "status"
                ]
    assert offenders == []
