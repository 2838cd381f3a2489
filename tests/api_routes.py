"""The JSON API's authorization matrix: every route of the OpenAPI document x who asks -> status.

``tests/test_api.py`` takes the routes from ``/api/v1/openapi.json`` (not from this file)
and fails on a route that has no entry here, or an entry for a route that is gone. The
group in the path is uk; the item is one the CLI proposed to uk (so not the
contributor's own: 403 for them); the edition does not exist (404 once the group's
check passed). Every write carries a body that is not JSON: whoever passes the checks
gets 422, so the matrix changes nothing. Who asks:

* admin, editor (of uk), other editor (of dach), contributor (to uk): their tokens;
* anonymous: no token; revoked: the admin's token after ``tokens revoke``;
* read-only: a read-only token of the editor of uk.
"""

WHO = ("admin", "editor", "other editor", "contributor", "anonymous", "revoked", "read-only")
NO_TOKEN = {"anonymous": 401, "revoked": 401}


def row(admin: int, editor: int, other: int, contributor: int, read_only: int) -> dict[str, int]:
    return {
        "admin": admin,
        "editor": editor,
        "other editor": other,
        "contributor": contributor,
        **NO_TOKEN,
        "read-only": read_only,
    }


# Reads: allowed 200; a write: allowed 422 (the body is not JSON), a read-only token 403.
GROUP_READ = row(200, 200, 404, 200, 200)
GROUP_WRITE = row(422, 422, 404, 422, 403)
EDITOR_READ = row(200, 200, 404, 403, 200)
EDITOR_WRITE = row(422, 422, 404, 403, 403)
# The edition in the path does not exist: 404 once the group's check passed.
NO_EDITION = row(404, 404, 404, 403, 404)

ITEM = "/api/v1/groups/{slug}/items/{item_id}"
EDITION = "/api/v1/groups/{slug}/editions/{edition_id}"
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/api/v1/groups"): row(200, 200, 200, 200, 200),
    ("GET", "/api/v1/groups/{slug}/items"): GROUP_READ,
    ("POST", "/api/v1/groups/{slug}/items"): GROUP_WRITE,
    # The contributor did not write the item: not theirs to read or change.
    ("GET", ITEM): row(200, 200, 404, 403, 200),
    ("PATCH", ITEM): GROUP_WRITE,
    ("POST", ITEM + "/review"): EDITOR_WRITE,
    ("POST", ITEM + "/target"): GROUP_WRITE,
    ("GET", "/api/v1/groups/{slug}/subscribers"): EDITOR_READ,
    ("POST", "/api/v1/groups/{slug}/subscribers"): EDITOR_WRITE,
    ("POST", "/api/v1/groups/{slug}/subscribers/remove"): EDITOR_WRITE,
    ("POST", "/api/v1/groups/{slug}/subscribers/import"): EDITOR_WRITE,
    ("GET", "/api/v1/groups/{slug}/subscribers/export"): EDITOR_READ,
    ("GET", "/api/v1/groups/{slug}/editions"): EDITOR_READ,
    ("POST", "/api/v1/groups/{slug}/editions"): EDITOR_WRITE,
    ("GET", EDITION): NO_EDITION,
    ("GET", EDITION + "/preview.html"): NO_EDITION,
    ("GET", EDITION + "/preview.txt"): NO_EDITION,
    ("POST", EDITION + "/approve"): EDITOR_WRITE,
    ("POST", EDITION + "/send"): EDITOR_WRITE,
    # Sources are the site's: an editor (of any group) reads them, only an admin fetches.
    ("GET", "/api/v1/sources"): row(200, 200, 200, 403, 200),
    ("POST", "/api/v1/sources/{source_name}/fetch"): row(422, 403, 403, 403, 403),
}
PARAMETERS = {"slug": "uk", "edition_id": "999", "source_name": "wipo-news"}
