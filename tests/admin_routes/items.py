"""A group's items: the queue, the new-item form, the preview, an item's page and its review.

The item is one the CLI proposed to uk (``prepare``): the contributor of uk did not write
it, so its page is a 403 for them; the other editor (dach) sees no uk at all (404). The
matrix's POST carries no title and no version: a 400 for whoever may send the form.
"""

from newsletter.pool.items import list_items
from tests.workspace import Workspace

GROUP = {"admin": 200, "editor": 200, "other editor": 404, "contributor": 200, "anonymous": 303}
BAD_FORM = {"admin": 400, "editor": 400, "other editor": 404, "contributor": 400, "anonymous": 303}
REVIEW = {"admin": 400, "editor": 400, "other editor": 404, "contributor": 403, "anonymous": 303}

EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/groups/{slug}/items"): GROUP,
    ("GET", "/admin/groups/{slug}/items/new"): GROUP,
    ("POST", "/admin/groups/{slug}/items/new"): BAD_FORM,
    ("POST", "/admin/groups/{slug}/items/preview"): GROUP,
    ("GET", "/admin/groups/{slug}/items/{item_id}"): {**REVIEW, "admin": 200, "editor": 200},
    ("POST", "/admin/groups/{slug}/items/{item_id}"): REVIEW,
    ("POST", "/admin/groups/{slug}/items/{item_id}/review"): REVIEW,
}


def prepare(ws: Workspace) -> dict[str, str]:
    """An item proposed to uk from the command line."""
    ws.cli("items", "add", "--title", "EPO news for the matrix", "--group", "uk")
    with ws.site.transaction() as session:
        [item] = list_items(session, ws.site.settings, group="uk")
    return {"item_id": str(item.id)}
