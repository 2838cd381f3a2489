"""The sign-in email: a one-time link to the workspace, sent through the site's transport.

It is a personal, transactional message, not a list's: From the site's sender, no
List-* headers, ``Auto-Submitted: auto-generated`` (RFC 3834) so that auto-responders
stay quiet, the envelope sender the user's signed VERP address, and a DKIM signature when
the site signs.
"""

from newsletter.core.i18n import translations
from newsletter.core.settings import Settings
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.notice import personal_message


def sign_in_message(
    settings: Settings,
    *,
    user_id: int,
    email: str,
    name: str,
    url: str,
    minutes: int,
    language: str | None = None,
    invited_by: str | None = None,
) -> OutgoingMessage:
    """The email carrying the sign-in link ``url`` (valid ``minutes``) to ``email``.

    ``invited_by`` (an admin's address) makes it an invitation to a new account.
    """
    language = language or settings.site.language
    gettext = translations(language).gettext
    subject = gettext("Sign in to %(site)s") % {"site": settings.site.name}
    opening = (
        gettext("%(admin)s invited you to the %(site)s workspace.")
        % {"admin": invited_by, "site": settings.site.name}
        if invited_by
        else gettext("Someone, hopefully you, asked to sign in to the %(site)s workspace.")
        % {"site": settings.site.name}
    )
    body = "\n\n".join(
        [
            opening,
            gettext("To sign in, open this link within %(minutes)d minutes; it works once:")
            % {"minutes": minutes}
            + "\n"
            + url,
            gettext("If it was not you, ignore this email: nobody can sign in without the link.")
            if not invited_by
            else gettext("Once it has expired, ask for a new link on the sign-in page with this address."),
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
        campaign="signin",
    )
