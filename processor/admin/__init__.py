"""Operational helpers: health checks, topic administration, migrations."""
