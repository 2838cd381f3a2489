"""The editions pages: the list and building, an edition's page and changes, preview, sending.

The matrix runs on a fresh database, where the edition in the path does not exist: the
group's check (404 for the other editor, 403 for the contributor, who holds no editions
permission) comes before the edition's look-up (404 for the admin and the editor).
tests/test_workspace_editions.py checks the same routes on a real edition.
"""

from tests.workspace import signed_in_only

HIDDEN = {"other editor": 404, "contributor": 403, "anonymous": 303}


def for_editors(status: int) -> dict[str, int]:
    return {**signed_in_only(status), **HIDDEN}


EDITION = "/admin/groups/{slug}/editions/{edition_id}"
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/groups/{slug}/editions"): for_editors(200),
    # Nothing waits to be built on a fresh database: the list says so.
    ("POST", "/admin/groups/{slug}/editions"): for_editors(200),
    ("GET", EDITION): for_editors(404),
    ("POST", EDITION + "/items"): for_editors(404),
    ("POST", EDITION + "/content"): for_editors(404),
    ("POST", EDITION + "/approve"): for_editors(404),
    ("GET", EDITION + "/preview"): for_editors(404),
    ("GET", EDITION + "/email"): for_editors(404),
    ("POST", EDITION + "/test"): for_editors(404),
    ("POST", EDITION + "/send"): for_editors(404),
    ("POST", EDITION + "/schedule"): for_editors(404),
    ("GET", EDITION + "/progress"): for_editors(404),
    ("POST", EDITION + "/pause"): for_editors(404),
    ("POST", EDITION + "/resume"): for_editors(404),
}
PARAMETERS = {"edition_id": "999"}
