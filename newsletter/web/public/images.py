"""Item images as the emails show them: ``GET /images/{name}``, public and cacheable for ever.

The names are the first 32 hex digits of each resized file's SHA-256
(``collecting/images.py``), so a name never changes meaning: a year of caching is safe,
and nobody can list images by counting. Only a name of that exact form is looked up,
in the one folder, so no path can reach another file.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.collecting.images import NAME, image_dir
from newsletter.core.site import Site

MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


class Images:
    def __init__(self, site: Site) -> None:
        self.folder: Path = image_dir(site.settings)

    def routes(self) -> list[Route]:
        return [Route("/images/{image}", self.image, methods=["GET", "HEAD"])]

    async def image(self, request: Request) -> Response:
        name = request.path_params["image"]
        path = self.folder / name
        if not NAME.fullmatch(name) or not path.is_file():
            return PlainTextResponse("no such image", status_code=404)
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
            headers={"cache-control": "public, max-age=31536000, immutable"},
        )
