"""The webhooks pages: every endpoint for admins; a group's endpoints for those who may read them.

A delivery carries a member's address, so the site-wide page is for admins only (403 for
anyone else signed in); the group page asks ``webhooks.read``, which editors hold and
contributors do not (403 on their own group), and the other editor gets 404 as for any
group they have no role on.
"""

from tests.workspace import WHO, signed_in_only

EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/webhooks"): {**signed_in_only(403), "admin": 200},
    ("GET", "/admin/groups/{slug}/webhooks"): {
        "admin": 200,
        "editor": 200,
        "other editor": 404,
        "contributor": 403,
        "anonymous": 303,
    },
}
assert all(set(answers) == set(WHO) for answers in EXPECTED.values())
