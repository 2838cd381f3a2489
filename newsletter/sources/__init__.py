"""Where items come from: Markdown files written by editors (and, later, feeds)."""
