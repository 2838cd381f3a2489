"""Sources into the pool: feeds, Markdown item files, and one collect run over every source."""
