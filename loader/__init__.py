"""Loader: migrations, imports and the rating snapshot sync."""
