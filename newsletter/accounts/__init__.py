"""The workspace's people: users, roles and permissions, sign-in links and sessions.

``roles`` turns the built-in and the site's own roles into sets of permissions;
``permissions`` asks the one question every page, API route and CLI path that acts for
a person asks (``can(actor, permission, group)``); ``users`` creates, extends, lists
and removes accounts; ``signin`` issues and consumes one-time links and checks
passwords (``passwords``); ``sessions`` keeps signed-in browsers on the server.
"""
