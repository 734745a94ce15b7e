"""Avro messages: single-object encoding, generated per-schema codecs, record <-> domain conversion."""
