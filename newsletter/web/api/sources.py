"""The site's sources through the API: their health, and "fetch now".

GET  /sources                        every source with its health (sources.read)
POST /sources/{source_name}/fetch    collect that source now, as ``collect --source NAME`` (sources.manage)

``operations/overview.py`` does the work, as for the workspace's sources page; a
source's groups are listed only as far as the token's user may see them.
"""

from newsletter.accounts.permissions import visible_groups
from newsletter.operations import overview
from newsletter.web.api.framework import Call, Endpoint
from newsletter.web.api.models import FetchNow, FetchReport, SourceList, SourceOut


def listing(call: Call) -> SourceList:
    settings = call.site.settings
    with call.site.transaction() as session:
        found = overview.sources(session, settings)
    seen = set(visible_groups(call.actor, list(settings.groups)))
    data = [
        SourceOut(
            name=view.config.name,
            url=view.config.url,
            topic=view.config.topic,
            groups=[g for g in view.config.groups if g == "*" or g in seen],
            items=view.health.items,
            last_fetched_at=view.health.last_fetched_at,
            last_success_at=view.health.last_success_at,
            last_error=view.health.last_error,
            failures=view.health.failures,
        )
        for view in found
    ]
    return SourceList(data=data)


def fetch(call: Call) -> FetchReport:
    report = overview.fetch_now(call.site, call.params["source_name"], actor=call.actor.label)
    return FetchReport(
        source=report.name,
        added=report.added,
        seen=report.seen,
        not_modified=report.not_modified,
        error=report.error,
        failures=report.failures,
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/sources",
        "sources",
        "Every source with its health",
        "sources.read",
        listing,
        SourceList,
        tag="sources",
    ),
    Endpoint(
        "POST",
        "/sources/{source_name}/fetch",
        "source-fetch",
        "Fetch one source now",
        "sources.manage",
        fetch,
        FetchReport,
        body=FetchNow,
        tag="sources",
        errors=(502,),
    ),
]
