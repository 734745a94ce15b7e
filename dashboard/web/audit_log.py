"""The dashboard's audit lines for what it publishes and what it hands out: one helper per event, so every route
(upload API, Edit Batch, the Sunbird APIs, the CSV downloads) names the same fields.

Records go to the ``audit`` logger; the server's handler (``enrolment.kafka.audit``) also publishes each as a
Sunbird AUDIT event on the telemetry topic.  Never a secret: ids and counts only.
"""

from __future__ import annotations

import logging

from producer.publish import UploadRequest

audit = logging.getLogger("audit")


def log_submission(upload: UploadRequest, rows: int, via: str) -> None:
    """UPLOAD_SUBMITTED: who submitted which upload to which batch, how (``session``/``token``), how many rows."""
    audit.info(
        "upload submitted",
        extra={
            "event": "UPLOAD_SUBMITTED",
            "user_id": upload.submitted_by or upload.requested_by,
            "via": via,
            "batch_id": upload.batch_id,
            "upload_id": upload.upload_id,
            "operation": upload.kind,
            "parent_upload_id": upload.parent_upload_id,
            "dry_run": upload.dry_run,
            "include_completed": upload.include_completed,
            "rows": rows,
        },
    )


def log_download(user_id: str, rows: int, **which: str) -> None:
    """CSV_DOWNLOAD of personal data: who, which object (``upload_id=``, ``plan_id=``), how many rows."""
    audit.info("CSV downloaded", extra={"event": "CSV_DOWNLOAD", "by": user_id, **which, "rows": rows})
