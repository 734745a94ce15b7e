"""Security AUDIT events (sign-ins, tokens, downloads, upload submissions) as Sunbird telemetry v3 records.

The same envelope as the enrolment AUDIT events (`enrolment.domain.outputs.audit_record`), so one telemetry
pipeline reads both: the actor is who acted, the object what was acted on, `edata.type` the event
(`SIGN_IN`, `SIGN_IN_FAILED`, `TOKEN_CREATE`, `CSV_DOWNLOAD`, ...), `edata.params` its details as strings.
Never a password or a token secret: callers pass only ids.
"""

from __future__ import annotations

from typing import Any

from enrolment.domain.outputs import PDATA

SECRET_WORDS = ("password", "secret", "token_value")


def security_record(
    event: str,
    *,
    actor: str,
    object_id: str,
    object_type: str,
    ets_ms: int,
    mid: str,
    params: dict[str, str],
    channel: str = "",
) -> dict[str, Any]:
    """A TelemetryEvent AUDIT record; params whose names suggest a secret are dropped, whatever the caller sent."""
    safe = {k: v for k, v in sorted(params.items()) if not any(w in k.lower() for w in SECRET_WORDS)}
    return {
        "eid": "AUDIT",
        "ets": ets_ms,
        "ver": "3.0",
        "mid": mid,
        "actor": {"id": actor or "anonymous", "type": "User"},
        "context": {
            "channel": channel,
            "pdata": dict(PDATA),
            "env": "Security",
            "sid": None,
            "did": None,
            "cdata": [],
            "rollup": {},
        },
        "object": {"id": object_id or "-", "type": object_type, "ver": None, "rollup": {}},
        "edata": {
            "type": event,
            "state": None,
            "prevstate": None,
            "props": sorted(safe),
            "level": None,
            "message": None,
            "params": safe,
        },
        "tags": ["security"],
    }
