"""The site-wide pages: sources, schedules, users (admins only), notifications and the stop link."""

from tests.workspace import everyone, signed_in_only

# Sources and schedules are read by admins and editors; acting on them, and the users
# page, is for admins: a site-wide page that is forbidden answers 403 (there is no group
# to hide). ``user_id`` 4 is the contributor (the fourth user made): the matrix's bare
# form lacks each act's fields, so nobody is changed. A stop token that was never signed: 400.
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/sources"): {
        "admin": 200,
        "editor": 200,
        "other editor": 200,
        "contributor": 403,
        "anonymous": 303,
    },
    ("POST", "/admin/sources/{source_name}/fetch"): {
        "admin": 200,
        "editor": 403,
        "other editor": 403,
        "contributor": 403,
        "anonymous": 303,
    },
    ("GET", "/admin/schedules"): {
        "admin": 200,
        "editor": 200,
        "other editor": 200,
        "contributor": 403,
        "anonymous": 303,
    },
    ("GET", "/admin/users"): {**signed_in_only(403), "admin": 200},
    ("POST", "/admin/users"): {**signed_in_only(403), "admin": 400},
    ("POST", "/admin/users/{user_id}/roles"): {**signed_in_only(403), "admin": 400},
    ("POST", "/admin/users/{user_id}/roles/remove"): {**signed_in_only(403), "admin": 400},
    ("POST", "/admin/users/{user_id}/remove"): {**signed_in_only(403), "admin": 400},
    ("GET", "/admin/notifications"): signed_in_only(200),
    ("POST", "/admin/notifications"): signed_in_only(400),
    ("GET", "/admin/notifications/stop/{stop_token}"): everyone(400),
    ("POST", "/admin/notifications/stop/{stop_token}"): everyone(400),
}
PARAMETERS = {"source_name": "wipo-news", "user_id": "4", "stop_token": "never-signed"}
