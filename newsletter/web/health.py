"""``GET /healthz``: whether this process can serve, for the proxy or the process manager.

200 ``ok`` when the database answers a trivial query of one of its tables, 503 otherwise (with the reason
kept out of the answer: it is logged). No session, no rate limit, nothing written.
"""

import logging

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.core.site import Site
from newsletter.web.admission import RETRY_AFTER

log = logging.getLogger(__name__)


def routes(site: Site) -> list[BaseRoute]:
    def ping() -> None:
        with site.engine.connect() as connection:
            # A table every migrated database has: the file, not only the driver, answers.
            connection.execute(sa.text("SELECT 1 FROM alembic_version LIMIT 1"))

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(ping)
        except SQLAlchemyError as exc:
            log.warning("healthz: the database does not answer: %s", exc)
            headers = {"retry-after": str(RETRY_AFTER)}
            return PlainTextResponse("database unavailable\n", status_code=503, headers=headers)
        return PlainTextResponse("ok\n")

    return [Route("/healthz", healthz, methods=["GET"])]
