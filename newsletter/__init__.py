"""newsletter: collect patent-information news, build per-group editions, render and send them.

The pipeline, one package per stage (each imports only those before it)::

    core -> audience -> pool -> collecting -> editions -> feedback -> delivery -> scheduling
         -> operations -> web -> cli

The command line (``newsletter.cli``) is a thin layer over the functions named here.
"""

from newsletter.audience.subscribers import ImportReport, forget, import_csv
from newsletter.collecting.collect import collect
from newsletter.core.errors import (
    ConfigError,
    DatabaseError,
    ImportFileError,
    InputError,
    NewsletterError,
    NotFoundError,
    SiteError,
    StateError,
)
from newsletter.core.settings import Settings, load_settings
from newsletter.core.site import Site
from newsletter.editions.build import approve as approve_edition
from newsletter.editions.build import build as build_edition
from newsletter.editions.build import send as send_edition
from newsletter.editions.render import Renderer
from newsletter.pool.items import ItemDraft, add_item, edit_item, list_items, set_status
from newsletter.scheduling.scheduler import run_due

__all__ = [
    "ConfigError",
    "DatabaseError",
    "ImportFileError",
    "ImportReport",
    "InputError",
    "ItemDraft",
    "NewsletterError",
    "NotFoundError",
    "Renderer",
    "Settings",
    "Site",
    "SiteError",
    "StateError",
    "add_item",
    "approve_edition",
    "build_edition",
    "collect",
    "edit_item",
    "forget",
    "import_csv",
    "list_items",
    "load_settings",
    "run_due",
    "send_edition",
    "set_status",
]
