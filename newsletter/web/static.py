"""The workspace's few static files, vendored in ``web/static/`` (no Node build).

``GET /static/{name}`` serves only the files named in :data:`FILES`, from the package,
so no path a visitor writes can reach anything else. They carry the same headers as
every page (``no-store`` included: a few kilobytes, and never a stale script after an
upgrade).

- ``htmx.min.js``: htmx 2.0.11 (BSD Zero Clause License, ``htmx.LICENSE``), from the
  npm package ``htmx.org``; it improves previews and progress, and every form works
  without it.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

FOLDER = Path(__file__).with_name("static")
FILES = {"htmx.min.js": "text/javascript; charset=utf-8"}


async def serve(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = FILES.get(name)
    if media_type is None:
        return PlainTextResponse("Not found", status_code=404)
    return FileResponse(FOLDER / name, media_type=media_type)


def routes() -> list[BaseRoute]:
    return [Route("/static/{name}", serve, methods=["GET"])]
