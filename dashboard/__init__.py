"""The participants dashboard: a read model built from the topics, and the web pages and JSON API on top of it.

Modules: ``readmodel`` (pure decisions of the read model), ``rules`` (pure page rules: the Edit Batch limit,
CSV rows, table paging), ``readstore`` (applying to PostgreSQL), ``consumer`` (the Kafka consumer thread),
``queries`` (page reads), ``models`` (the JSON shapes), ``web`` (the FastAPI app and its routers) and
``server`` (uvicorn plus the consumer in one process).
"""
