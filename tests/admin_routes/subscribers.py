"""A group's subscribers: the list, add, remove, the CSV import and its confirmation, export.

Contributors hold no subscribers.* permission: 403 on their own group (it is visible to
them), and the other editor gets 404 as for any group they have no role on. The matrix
posts only csrf, email and password: add and remove then lack their ``address`` and the
upload its file (400); an upload id that was never issued is a 404.
"""

from tests.workspace import WHO


def _statuses(allowed: int) -> dict[str, int]:
    return {"admin": allowed, "editor": allowed, "other editor": 404, "contributor": 403, "anonymous": 303}


BASE = "/admin/groups/{slug}/subscribers"
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", BASE): _statuses(200),
    ("POST", BASE + "/add"): _statuses(400),
    ("POST", BASE + "/remove"): _statuses(400),
    ("GET", BASE + "/export"): _statuses(200),
    ("GET", BASE + "/import"): _statuses(200),
    ("POST", BASE + "/import"): _statuses(400),
    ("POST", BASE + "/import/{upload_id}"): _statuses(404),
}
assert all(set(answers) == set(WHO) for answers in EXPECTED.values())
PARAMETERS = {"upload_id": "never-issued"}
