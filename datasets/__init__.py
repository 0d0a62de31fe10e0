"""Dataset modules register themselves at import."""
