"""Kafka adapters: the processor loop, the command publisher, result followers."""
