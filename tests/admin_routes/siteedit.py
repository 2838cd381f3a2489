"""Changing the site's sources and schedules: admins only; editors read the lists but get no form.

The matrix's bare form has no file version (nor any field), so an admin's POST is a 400
that changes nothing; every other signed-in person is refused (403) before the form is read.
"""

from tests.workspace import signed_in_only

ADMIN_ONLY_PAGE = {**signed_in_only(403), "admin": 200}
ADMIN_ONLY_BARE_POST = {**signed_in_only(403), "admin": 400}

EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/admin/sources/new"): ADMIN_ONLY_PAGE,
    ("POST", "/admin/sources/new"): ADMIN_ONLY_BARE_POST,
    ("GET", "/admin/sources/{source_name}/edit"): ADMIN_ONLY_PAGE,
    ("POST", "/admin/sources/{source_name}/edit"): ADMIN_ONLY_BARE_POST,
    ("POST", "/admin/sources/{source_name}/remove"): ADMIN_ONLY_BARE_POST,
    ("GET", "/admin/schedules/new"): ADMIN_ONLY_PAGE,
    ("POST", "/admin/schedules/new"): ADMIN_ONLY_BARE_POST,
    ("GET", "/admin/schedules/{schedule_name}/edit"): ADMIN_ONLY_PAGE,
    ("POST", "/admin/schedules/{schedule_name}/edit"): ADMIN_ONLY_BARE_POST,
    ("POST", "/admin/schedules/{schedule_name}/remove"): ADMIN_ONLY_BARE_POST,
}
PARAMETERS = {"schedule_name": "weekly"}
