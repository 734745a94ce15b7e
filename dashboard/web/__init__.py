"""The dashboard's web layer: FastAPI routers split by concern, assembled by :func:`dashboard.web.app.create_app`.

``app`` (assembly), ``deps`` (the engine, settings and acting user every route depends on), ``render``
(Jinja2 pages), ``errors`` (one sentence per problem, as a page or as JSON), ``lookups`` (a batch or upload,
else 404), ``convert`` (rows to JSON shapes), ``timing`` (Server-Timing header), and the routers: ``pages``
(HTML), ``edit`` (Edit Batch form and publishing), ``downloads`` (CSV), ``api`` (JSON under /api/) and
``sunbird`` (the Sunbird-compatible batch API).
"""
