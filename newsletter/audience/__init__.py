"""Subscribers and their memberships: addresses, CSV import and export, self-service (confirm,
unsubscribe, preferences).
"""
