"""The subscriber pages. Every token is signed; nothing personal appears in a URL but the token.

GET  /                                  the groups, with sign-up and archive links
GET  /subscribe/{group}  POST           sign-up form; double opt-in email   (signup.py)
POST /subscribe/{group}/embedded        the form embedded in a group's website (embed.py)
POST /subscribe/{group}.json            the same sign-up as JSON, from that website's server
GET  /confirm/{token}    POST           confirmation page with a button; POST confirms
GET  /unsubscribe/{token}               page with a confirm button; GET changes nothing
POST /unsubscribe/{token}               RFC 8058 one-click (List-Unsubscribe=One-Click)
POST /unsubscribe/{token}/confirm       the page's button (may leave every group)
GET  /unsubscribe  /preferences         where to find the personal link (links.py)
GET  /preferences/{token}  POST         groups, language, name           (preferences.py)
GET  /preferences/{token}/export        my data as JSON
POST /preferences/{token}/forget        erase me
GET  /archive/{group}  /archive/{group}/{id}  /archive/{group}/feed.atom   (archive.py)
GET  /events/{item}.ics                 an event for the calendar         (events.py)
GET  /images/{image}                    an item's image, resized for email (images.py)
"""

from starlette.routing import BaseRoute

from newsletter.core.site import Site
from newsletter.web.pages import Pages
from newsletter.web.public.archive import Archive
from newsletter.web.public.embed import EmbeddedSignUp
from newsletter.web.public.events import Events
from newsletter.web.public.images import Images
from newsletter.web.public.links import Links
from newsletter.web.public.preferences import Preferences
from newsletter.web.public.signup import SignUp
from newsletter.web.public.unsubscribe import Unsubscribe
from newsletter.web.security import RateLimits


def routes(site: Site, pages: Pages, limits: RateLimits) -> list[BaseRoute]:
    """The subscriber pages' routes (confirmation emails are queued, never sent from here)."""
    links = Links(site, pages)
    return [
        *EmbeddedSignUp(links, limits).routes(),
        *SignUp(links, limits).routes(),
        *Unsubscribe(links).routes(),
        *Preferences(links).routes(),
        *Archive(site, pages).routes(),
        *Events(site).routes(),
        *Images(site).routes(),
    ]
