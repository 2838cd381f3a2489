"""The subscriber web pages: sign-up, confirmation, unsubscribe (RFC 8058), preferences, archive."""

from newsletter.web.app import create_app

__all__ = ["create_app"]
