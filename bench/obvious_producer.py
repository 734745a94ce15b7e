"""The producer baseline: publishing a participant CSV the obvious way, for comparison with `participants add`.

    .venv/bin/python -m bench.obvious_producer --topic T --batch B --as ADMIN FILE

``csv.DictReader`` over the file, one dict per row, ``fastavro.schemaless_writer`` into a ``BytesIO`` per
message (with the same single-object header, so the bytes on the wire equal the real producer's), and a plain
``confluent_kafka.Producer`` (library defaults: acks=all, no idempotence, no compression) with a
``poll(0)`` per message and a flush at the end.  No row checks, no duplicate detection, no upload seal — it
does less than the real producer.  Prints ``published N`` on success.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
import uuid

import fastavro
from confluent_kafka import KafkaError, Message, Producer

from enrolment.kafka.clients import base_config
from enrolment.messages.codec import MARKER, default_codec
from enrolment.settings import Settings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--as", dest="requester", required=True)
    args = parser.parse_args()

    entry = default_codec().current["ParticipantCommand"]
    header = MARKER + entry.fingerprint
    producer = Producer(base_config(Settings.from_env("producer")))  # the producer principal's credentials
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    upload_id = str(uuid.uuid4())
    key = args.batch.encode()
    now = int(time.time() * 1000)
    n = 0
    with open(args.file, encoding="utf-8-sig", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            record = {
                "command_id": f"{upload_id}:{line}",
                "upload_id": upload_id,
                "batch_id": args.batch,
                "action": "ADD",
                "identifier": row["state_id"].strip(),
                "id_type": "STATE_ID",
                "line": line,
                "requested_by": args.requester,
                "source": "BACKEND",
                "dry_run": False,
                "requested_at": now,
                "origin_upload_id": None,
                "origin_line": None,
            }
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, entry.parsed, record)
            value = header + buf.getvalue()
            while True:
                try:
                    producer.produce(args.topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            n += 1
    remaining = producer.flush(120)
    if remaining or errors:
        print(f"not acknowledged: {remaining} queued, {len(errors)} errors", file=sys.stderr)
        return 1
    print(f"published {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
