"""The double opt-in email: a signed link that expires, under the list's own headers.

A sign-up (``audience/selfservice.py``) says whom to ask; this builds the email. It
carries the List-Id, List-Unsubscribe and a VERP sender like the group's editions
(``headers.py``, as edition 0), so a bounce or a complaint about it finds the member,
and it is DKIM-signed when the site signs.
"""

from newsletter.audience.selfservice import Subscription
from newsletter.core.i18n import translations
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer
from newsletter.delivery.headers import ListHeaders
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.notice import notice_message


def confirmation_message(
    settings: Settings, signer: Signer, subscription: Subscription, group_slug: str
) -> OutgoingMessage:
    """The email that asks the person to confirm ``subscription`` to the group ``group_slug``."""
    group_name = settings.group(group_slug).name
    # The link names the consent request it confirms, so that it works once (selfservice.confirm).
    request = {} if subscription.consent_id is None else {"c": subscription.consent_id}
    token = signer.make("confirm", subscription.subscriber_id, subscription.group_id, **request)
    link = f"{settings.site.base_url}/confirm/{token}"
    gettext = translations(subscription.language).gettext
    subject = gettext("Please confirm your subscription to %(group)s") % {"group": group_name}
    list_headers = ListHeaders(
        settings,
        signer,
        edition_id=0,
        group_id=subscription.group_id,
        group_slug=group_slug,
        group_name=group_name,
    )
    # The group's own sender identity signs the footer, as it does the headers.
    identity = list_headers.identity
    body = "\n\n".join(
        [
            gettext("Someone, hopefully you, asked to receive %(group)s by email at this address.")
            % {"group": group_name},
            gettext("To confirm, open this link within two days:") + "\n" + link,
            gettext("If it was not you, ignore this email: nothing will be sent to you."),
            f"{identity.organisation}\n{identity.postal_address}",
        ]
    )
    return notice_message(
        settings,
        list_headers,
        subscriber_id=subscription.subscriber_id,
        email=subscription.email,
        name=subscription.name,
        language=subscription.language,
        subject=subject,
        body=body,
        unsubscribe_token=list_headers.unsubscribe_token(subscription.subscriber_id),
        sender=list_headers.return_path(subscription.subscriber_id),
    )
