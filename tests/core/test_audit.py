"""Security AUDIT events: each audit log record becomes one telemetry v3 AUDIT record, never with a secret."""

from __future__ import annotations

import logging

from enrolment.domain.audit import security_record
from enrolment.kafka.audit import telemetry_of
from enrolment.messages.codec import default_codec


def _record(msg: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("audit", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(fields)
    return record


def test_a_token_creation_names_the_operator_and_the_token() -> None:
    event = telemetry_of(
        _record("api token create", action="api-token.create", token_id="tok_1", user="admin-ka", by="cli:root")
    )
    assert event["eid"] == "AUDIT" and event["edata"]["type"] == "API_TOKEN_CREATE"
    assert event["actor"] == {"id": "cli:root", "type": "User"}
    assert (event["object"]["id"], event["object"]["type"]) == ("tok_1", "ApiToken")
    assert event["edata"]["params"]["user"] == "admin-ka"
    name, decoded = default_codec().decode(default_codec().encode("TelemetryEvent", event))
    assert name == "TelemetryEvent" and decoded["edata"]["type"] == "API_TOKEN_CREATE"


def test_a_failed_sign_in_and_a_download_name_their_objects() -> None:
    failed = telemetry_of(_record("sign-in failed", event="SIGN_IN_FAILED", user_id="m1", client="10.0.0.9"))
    assert failed["edata"]["type"] == "SIGN_IN_FAILED" and failed["actor"]["id"] == "m1"
    assert failed["object"] == {"id": "m1", "type": "User", "ver": None, "rollup": {}}
    download = telemetry_of(_record("csv", event="CSV_DOWNLOAD", by="m1", batch_id="b1", rows=10))
    assert (download["object"]["id"], download["object"]["type"]) == ("b1", "CourseBatch")
    assert download["edata"]["params"]["rows"] == "10"


def test_fields_that_look_secret_never_reach_the_event() -> None:
    event = security_record(
        "SIGN_IN",
        actor="m1",
        object_id="m1",
        object_type="User",
        ets_ms=1,
        mid="AUDIT:x",
        params={"password": "hunter2", "new_secret": "s", "client": "1.2.3.4"},
    )
    assert event["edata"]["params"] == {"client": "1.2.3.4"}
    assert "hunter2" not in repr(event)
