"""The web app: the subscriber pages (``public/``), sign-up to erasure, and the archive.

``pages``, ``forms`` and ``security`` are shared by every part of the app.
"""

from newsletter.web.app import create_app

__all__ = ["create_app"]
