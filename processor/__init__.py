"""Bulk enrolment stream processor: domain rules, store, Kafka adapters and the CLI."""
