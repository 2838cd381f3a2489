"""Sign-in, sign-out, the dashboard, the account page and a group's front page."""

from tests.workspace import everyone, signed_in_only

# The group is "uk" (the editor's and the contributor's; the other editor's is "dach"); a
# token is one that was never issued.
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/sign-in"): everyone(200),
    ("POST", "/admin/sign-in"): everyone(200),
    ("POST", "/admin/password-sign-in"): everyone(400),
    ("GET", "/admin/sign-in/{token}"): everyone(400),
    ("POST", "/admin/sign-in/{token}"): everyone(400),
    ("POST", "/admin/sign-out"): everyone(303),
    ("POST", "/admin/sign-out-everywhere"): everyone(303),
    ("GET", "/admin/"): signed_in_only(200),
    ("GET", "/admin/account"): signed_in_only(200),
    ("GET", "/admin/groups/{slug}/"): {
        "admin": 200,
        "editor": 200,
        "other editor": 404,
        "contributor": 200,
        "anonymous": 303,
    },
}
PARAMETERS = {"slug": "uk", "token": "never-issued"}
