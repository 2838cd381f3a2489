"""The sign-up form a group embeds in its website: its editors (subscribers.write) see it.

Contributors hold no subscribers.* permission: 403 on their own group; the other editor
gets 404 as for any group they have no role on.
"""

from tests.workspace import WHO

EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/groups/{slug}/signup-form"): {
        "admin": 200,
        "editor": 200,
        "other editor": 404,
        "contributor": 403,
        "anonymous": 303,
    },
}
assert all(set(answers) == set(WHO) for answers in EXPECTED.values())
