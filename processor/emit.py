"""The messages one applied batch publishes: results, enrolment events, telemetry, changelog, summaries, dead letters.

The same function builds them the first time and when an in-doubt batch is re-published from the ledger,
so a recovery publishes byte for byte what the first attempt would have.
"""

from __future__ import annotations

from enrolment.domain.outputs import (
    Recorded,
    UploadInfo,
    audit_record,
    changelog_record,
    event_record,
    log_record,
    result_record,
    summary_record,
)
from enrolment.kafka.checkpoint import OutMessage
from enrolment.kafka.clients import Headers
from enrolment.messages.codec import Codec
from enrolment.settings import Topics
from enrolment.store.dead_letters import DeadLetter, dead_letter_headers


def outputs_for(
    codec: Codec, topics: Topics, recorded: list[Recorded], uploads: list[UploadInfo], letters: list[DeadLetter]
) -> list[OutMessage]:
    out: list[OutMessage] = []
    _recorded(out, codec, topics, recorded)
    for u in uploads:
        key = u.batch_id.encode()
        out.append((topics.uploads, key, codec.encode("UploadSummary", summary_record(u)), None))
        out.append((topics.telemetry, key, codec.encode("TelemetryEvent", log_record(u)), None))
    for d in letters:
        headers: Headers = list(dead_letter_headers(d))
        out.append((topics.dead_letters, d.key or b"", d.value or b"", headers))
    return out


def _recorded(out: list[OutMessage], c: Codec, t: Topics, recorded: list[Recorded]) -> None:
    result_schema = c.current["CommandResult"]
    event_schema = c.current["EnrollmentEvent"]
    telemetry_schema = c.current["TelemetryEvent"]
    state_schema = c.current["EnrollmentState"]
    for r in recorded:
        key = r.batch_id.encode()
        out.append((t.results, key, c.encode_with(result_schema, result_record(r)), None))
        ev = event_record(r)
        if ev is None:
            continue
        out.append((t.enrollment_events, key, c.encode_with(event_schema, ev), None))
        audit = audit_record(r)
        if audit is not None:
            out.append((t.telemetry, key, c.encode_with(telemetry_schema, audit), None))
        changelog = changelog_record(r)
        if changelog is not None:
            ckey, state = changelog
            value = None if state is None else c.encode_with(state_schema, state)
            out.append((t.enrollments, ckey, value, None))
