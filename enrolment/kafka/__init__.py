"""Kafka, wrapped once: client configs built from the settings, topic administration, reading topics."""
