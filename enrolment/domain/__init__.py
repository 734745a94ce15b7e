"""Pure domain rules: may a command apply, and what is its outcome. No I/O here."""
