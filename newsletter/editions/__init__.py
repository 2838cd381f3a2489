"""An edition per group: build from the pool, approve, cancel; render (Jinja2 -> MJML -> HTML) and the
text part.
"""
