"""Each component's credentials, from the stack's private folder, so that no command needs a password typed.

`scripts/stack up` writes one file per component into the private folder (``.stack/secrets`` unless
``PARTICIPANTS_SECRETS_DIR`` says otherwise; mode 0700, files 0600)::

    .stack/secrets/processor.env      export KAFKA_SASL_USERNAME='processor'
                                      export KAFKA_SASL_PASSWORD='...'
                                      export DATABASE_URL='postgresql+psycopg2://participants_processor:...@...'

The files are shell-sourceable (``scripts/stack env processor`` prints one) and are read here as
``KEY=VALUE`` lines.  Variables set in the environment always win over the file: an operator pointing at a
real cluster sets them and the folder is never read for those keys.  A missing folder or file means "no
credentials": the open stack of earlier versions keeps working.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

# Who runs what: the Kafka principal and database role of each component (README "Principals").
COMPONENTS = ("admin", "owner", "processor", "dashboard", "producer", "progress")
DEFAULT_COMPONENT = "owner"
_ROOT = Path(__file__).resolve().parent.parent


def secrets_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the stack keeps its generated credentials."""
    env = os.environ if environ is None else environ
    configured = env.get("PARTICIPANTS_SECRETS_DIR", "")
    return Path(configured) if configured else _ROOT / ".stack" / "secrets"


def parse(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (an ``export`` prefix, shell quoting and ``#`` comments allowed)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, raw = line.partition("=")
        if not sep or not key.strip().isidentifier():
            continue
        words = shlex.split(raw, comments=True) if raw.strip() else [""]
        values[key.strip()] = words[0] if words else ""
    return values


def load(component: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The component's stored settings, or nothing when the stack has not generated any."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r} (one of {', '.join(COMPONENTS)})")
    path = secrets_dir(environ) / f"{component}.env"
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}


def environment(component: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings' view of the environment: the component's file first, set variables over it."""
    env = dict(os.environ if environ is None else environ)
    merged = load(component, env)
    merged.update({k: v for k, v in env.items() if v != ""})
    return merged
