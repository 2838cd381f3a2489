"""Who a group's mail comes from: the sender identity, the group's own or the site's.

A national group often has its own sender name, its own mail domain and its own
postal address. ``[groups.SLUG]`` may say so (``sender``, ``reply_to``,
``postal_address``, ``list_id_domain``, ``bounce_address`` and a ``[groups.SLUG.dkim]``
table); whatever a group leaves out comes from the site (``[site]``, ``[delivery]
bounce_address``, ``[dkim]``). :func:`sender_identity` works that out once, and
``delivery/headers.py``, the one place that writes header fields, takes every value
from the result, so an edition, a confirmation and a probe to a member of the group
all carry the same From, Reply-To, List-Id, envelope sender and DKIM signature.

Two values are derived rather than copied, because a copy would point at the wrong
domain:

* the bounce address: the group's own, else ``[delivery] bounce_address`` when the
  operator set one (a mailbox they read), else ``<local>-bounces@<domain>`` of the
  group's own From address, so the envelope sender stays in the From domain (SPF and
  DMARC alignment);
* the List-Id host: ``list_id_domain`` (the group's, then the site's), else the From
  domain. Never the website's host: a list identifier (RFC 2919) must not change
  when the website moves, or every filter a reader wrote stops matching.
"""

from dataclasses import dataclass
from email.utils import parseaddr

from newsletter.core.sections import DeliverySection, DkimSection, GroupConfig, SiteSection


@dataclass(frozen=True)
class SenderIdentity:
    """Everything that says who sent a list's message; see the module docstring for the fallbacks."""

    # The From display name (may be empty) and address.
    name: str
    address: str
    reply_to: str | None
    postal_address: str
    # Who the footer of a text notice names above the postal address.
    organisation: str
    list_id_domain: str
    bounce_address: str
    dkim: DkimSection | None

    @property
    def domain(self) -> str:
        """The From address's domain: Message-IDs are made in it."""
        return self.address.rpartition("@")[2]

    @property
    def unsubscribe_address(self) -> str:
        """The mailto in List-Unsubscribe: ``<local>-unsubscribe@<domain>`` of the From address."""
        local, _, domain = self.address.rpartition("@")
        return f"{local}-unsubscribe@{domain}"

    def list_id(self, group_slug: str) -> str:
        """The List-Id's identifier (without the phrase and brackets): ``uk.news.example.org``."""
        return f"{group_slug}.{self.list_id_domain}"

    @property
    def dkim_aligned(self) -> bool:
        """Whether a DKIM key signs for the From domain or a parent of it (DMARC relaxed alignment)."""
        if self.dkim is None:
            return False
        domain, signing = self.domain.lower(), self.dkim.domain
        return domain == signing or domain.endswith("." + signing)


def sender_identity(
    site: SiteSection,
    delivery: DeliverySection,
    dkim: DkimSection | None,
    group: GroupConfig | None = None,
) -> SenderIdentity:
    """The identity of ``group``'s mail (None: the site's own, for mail that is no group's)."""
    own_sender = group.sender if group is not None else None
    name, address = parseaddr(own_sender or site.sender)
    if group is not None and group.bounce_address:
        bounce = group.bounce_address
    elif delivery.bounce_address:
        bounce = delivery.bounce_address
    else:
        local, _, domain = address.rpartition("@")
        bounce = f"{local}-bounces@{domain}"
    list_host = (group.list_id_domain if group is not None else None) or site.list_id_domain
    return SenderIdentity(
        name=name,
        address=address,
        reply_to=(group.reply_to if group is not None else None) or site.reply_to,
        postal_address=(group.postal_address if group is not None else None) or site.postal_address,
        organisation=(name or site.name) if own_sender else site.name,
        list_id_domain=(list_host or address.rpartition("@")[2]).lower(),
        bounce_address=bounce,
        dkim=(group.dkim if group is not None else None) or dkim,
    )
