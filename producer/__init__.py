"""Producer side: reading participant files and publishing commands."""
