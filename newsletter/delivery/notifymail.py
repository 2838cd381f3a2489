"""The notifications digest: what a person of the workspace should know, in one email.

Like the sign-in email it is personal and from the site's sender, with
``Auto-Submitted: auto-generated`` (RFC 3834) and the user's signed VERP address as the
envelope sender. It carries a signed "stop these notifications" link, also as
``List-Unsubscribe`` with RFC 8058's one-click POST, which mail providers show as an
unsubscribe button; DKIM's ``h=`` covers both fields (``dkim.py``).
"""

from collections.abc import Sequence

from newsletter.core.i18n import translations
from newsletter.core.messages import Message, translate
from newsletter.core.settings import Settings
from newsletter.delivery.headers import ONE_CLICK
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.notice import personal_message


def digest_message(
    settings: Settings,
    *,
    user_id: int,
    email: str,
    name: str,
    notices: Sequence[Message | str],
    stop_url: str,
    language: str | None = None,
) -> OutgoingMessage:
    """One digest to ``email`` listing ``notices`` (one line or paragraph each), with the stop link.

    A notice that is a :class:`Message` is translated here, in the digest's language.
    """
    language = language or settings.site.language
    gettext, ngettext = translations(language).gettext, translations(language).ngettext
    subject = ngettext(
        "%(site)s: %(count)d thing needs your attention",
        "%(site)s: %(count)d things need your attention",
        len(notices),
    ) % {"site": settings.site.name, "count": len(notices)}
    body = "\n\n".join(
        [
            gettext("This happened in the %(site)s workspace since your last notification:")
            % {"site": settings.site.name},
            *(f"* {translate(notice, translations(language))}" for notice in notices),
            gettext("Workspace: %(url)s") % {"url": f"{settings.site.base_url}/admin/"},
            gettext("To stop these notifications, open this link: %(url)s") % {"url": stop_url},
            f"{settings.site.name}\n{settings.site.postal_address}",
        ]
    )
    return personal_message(
        settings,
        user_id=user_id,
        email=email,
        name=name,
        subject=subject,
        body=body,
        language=language,
        campaign="notify",
        extra=[("List-Unsubscribe", f"<{stop_url}>"), ("List-Unsubscribe-Post", ONE_CLICK)],
    )
