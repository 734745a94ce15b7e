"""PostgreSQL enrolment store: tables, migrations, imports and the processor's set-based step."""
