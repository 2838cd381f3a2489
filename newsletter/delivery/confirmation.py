"""The double opt-in email: a signed link that expires, under the list's own headers.

A sign-up (``audience/selfservice.py``) says whom to ask; this builds the email. It
carries the List-Id, List-Unsubscribe and a VERP sender like the group's editions
(``headers.py``, as edition 0), so a bounce or a complaint about it finds the member,
and it is DKIM-signed when the site signs.
"""

from email.message import EmailMessage

from newsletter.audience.selfservice import Subscription
from newsletter.core.i18n import translations
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer
from newsletter.delivery import dkim
from newsletter.delivery.headers import BODY_POLICY, WIRE_POLICY, ListHeaders, recipient_address
from newsletter.delivery.message import OutgoingMessage


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
    body = "\n\n".join(
        [
            gettext("Someone, hopefully you, asked to receive %(group)s by email at this address.")
            % {"group": group_name},
            gettext("To confirm, open this link within two days:") + "\n" + link,
            gettext("If it was not you, ignore this email: nothing will be sent to you."),
            f"{settings.site.name}\n{settings.site.postal_address}",
        ]
    )
    list_headers = ListHeaders(
        settings,
        signer,
        edition_id=0,
        group_id=subscription.group_id,
        group_slug=group_slug,
        group_name=group_name,
    )
    smtputf8, recipient, address = recipient_address(subscription.email)
    message = EmailMessage(policy=BODY_POLICY[smtputf8])
    message_id = list_headers.message_id(subscription.subscriber_id)
    for name, value in list_headers.fields(
        name=subscription.name,
        address=address,
        subject=subject,
        message_id=message_id,
        token=list_headers.unsubscribe_token(subscription.subscriber_id),
        utf8=smtputf8,
    ):
        message.set_raw(name, value)
    message.set_content(body + "\n", charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = subscription.language
    data = message.as_bytes(policy=WIRE_POLICY[smtputf8])
    sign = dkim.signer_for(settings)
    return OutgoingMessage(
        sender=list_headers.return_path(subscription.subscriber_id),
        recipient=recipient,
        data=sign(data) if sign is not None else data,
        smtputf8=smtputf8,
        message_id=message_id,
        edition_id=0,
        delivery_id=None,
        subscriber_id=subscription.subscriber_id,
    )
