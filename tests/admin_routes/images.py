"""Public routes the workspace's matrix also walks: an item's image is served to everyone."""

import io

from PIL import Image

from newsletter.collecting.images import store
from tests.workspace import Workspace, everyone

# Anyone, signed in or not, gets the image: emails load it without a session.
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/images/{image}"): everyone(200),
}


def prepare(ws: Workspace) -> dict[str, str]:
    """A small image stored as collecting stores one."""
    data = io.BytesIO()
    Image.new("RGB", (40, 20), (31, 78, 121)).save(data, "PNG")
    return {"image": store(data.getvalue(), ws.site.settings).name}
