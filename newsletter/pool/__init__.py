"""The shared item pool: propose, edit, review and target items; Markdown to sanitised HTML."""
