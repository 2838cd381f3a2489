"""Events for the calendar: an event item as an iCalendar (.ics) file.

Only an item that went out in a sent edition of a group the site declares (whose
archive is public, ``archive.py``) is served: ids are sequential, and proposed,
rejected or not yet sent items must not be read by counting.
"""

from icalendar import Calendar
from icalendar import Event as CalendarEvent
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.core.models import Edition, EditionItem, EditionStatus, Group, Item
from newsletter.core.site import Site

PRODUCT_ID = "-//newsletter//patent information news//EN"


class Events:
    def __init__(self, site: Site) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        return [Route("/events/{item:int}.ics", self.event)]

    def _load(self, item_id: int) -> Item | None:
        """The item if a sent edition of a public archive carried it, else None."""
        with self.site.transaction() as session:
            return session.exec(
                select(Item)
                .join(EditionItem, col(EditionItem.item_id) == Item.id)
                .join(Edition, col(Edition.id) == EditionItem.edition_id)
                .join(Group, col(Group.id) == Edition.group_id)
                .where(
                    col(Item.id) == item_id,
                    col(Edition.status) == EditionStatus.SENT,
                    col(Group.slug).in_(list(self.site.settings.groups)),
                )
                .limit(1)
            ).first()

    async def event(self, request: Request) -> Response:
        item = await run_in_threadpool(self._load, request.path_params["item"])
        if item is None or item.event_start is None:
            return PlainTextResponse("no such event", status_code=404)
        calendar = Calendar()
        calendar.add("prodid", PRODUCT_ID)
        calendar.add("version", "2.0")
        event = CalendarEvent()
        host = self.site.settings.site.base_url.split("://", 1)[-1]
        event.add("uid", f"item-{item.id}@{host}")
        event.add("summary", item.title)
        event.add("dtstart", item.event_start)
        if item.event_end:
            event.add("dtend", item.event_end)
        event.add("dtstamp", item.updated_at)
        if item.event_place:
            event.add("location", item.event_place)
        if item.url:
            event.add("url", item.url)
        calendar.add_component(event)
        return Response(
            calendar.to_ical(),
            media_type="text/calendar",
            headers={"content-disposition": f'attachment; filename="event-{item.id}.ics"'},
        )
