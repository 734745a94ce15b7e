"""Publishing an upload from the command line and following it: the summary, the JSON, the report, the audit.

Shared by `add`/`remove`/`retry`/`undo` (producer.cli) and the plan commands (producer.plan_cli), whose applied
plans are uploads like any other.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

from enrolment.errors import EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, UserError
from enrolment.messages.codec import Codec, default_codec
from enrolment.settings import Settings
from producer.follow import UploadStatus
from producer.publish import Progress, Published, UploadRequest


def audit_submission(settings: Settings, codec: Codec, request: UploadRequest, upload_id: str, rows: int) -> None:
    """The direct (Kafka) path's submission, as the upload API's: an audit line and an AUDIT telemetry event."""
    from enrolment.kafka.audit import ensure

    handler = ensure(settings, codec)  # a plan's approval already installed it: one connection, one flush
    logging.getLogger("audit").info(
        "upload submitted",
        extra={
            "event": "UPLOAD_SUBMITTED",
            "by": request.requested_by,
            "submitted_by": request.submitted_by,
            "upload_id": upload_id,
            "batch_id": request.batch_id,
            "kind": request.kind,
            "rows": rows,
            "include_completed": request.include_completed,
            "via": "kafka",
        },
    )
    handler.flush()


def publish_and_follow(
    args: argparse.Namespace,
    settings: Settings,
    publish: Callable[[Codec], tuple[UploadRequest, Published]],
    extra: Callable[[], dict[str, Any]] | None = None,
) -> int:
    """Runs ``publish`` (with the follower already listening when --wait), then follows, prints and reports.

    ``extra``: asked after publishing, keys added to the JSON summary (an applied plan's).
    """
    from enrolment.kafka.audit import ensure as ensure_audit
    from enrolment.kafka.clients import BrokerUnavailable
    from producer.follow import ResultFollower, write_report

    report_out = open_report(args.report)
    follower: ResultFollower | None = None
    try:
        codec = default_codec()
        ensure_audit(settings, codec, warm=True)  # connects while publishing; audit_submission flushes it
        try:
            follower = ResultFollower(settings, codec) if args.wait else None
            request, published = publish(codec)
        except BrokerUnavailable as exc:
            raise UserError(str(exc), EXIT_UNREACHABLE) from None
        audit_submission(settings, codec, request, published.upload_id, published.published)
        status = published_status(published, request)
        status.extra = extra() if extra is not None else {}
        if follower is None:
            print_published(args, status)
            if report_out is not None:
                write_report(report_out, {}, published.refused, published.accepted_rows)
            return EXIT_REJECTED if status.rejected_total else EXIT_OK
        if published.published == 0:
            status.completed = True
            results = {}
        else:
            results = follower.follow(status, published.published, args.timeout, Progress("processed"))
        if report_out is not None:
            write_report(report_out, results, published.refused, published.accepted_rows)
    finally:
        if follower is not None:
            follower.close()
        if report_out is not None:
            report_out.close()
    return print_followed(args, status)


def published_status(published: Published, request: UploadRequest) -> UploadStatus:
    """The summary of a just-published upload: nothing processed yet, the refused rows listed."""
    from producer.follow import UploadStatus

    refused = [
        {"line": r.line, "identifier": r.identifier, "id_type": r.id_type, "reason": r.reason, "message": r.message}
        for r in published.refused
    ]
    return UploadStatus(
        upload_id=published.upload_id,
        batch_id=request.batch_id,
        kind=request.kind,
        dry_run=request.dry_run,
        published=published.published,
        refused=refused,
        requested_by=request.requested_by,
        submitted_by=request.submitted_by,
    )


def open_report(path: str | None) -> TextIO | None:
    """The --report file, opened before publishing: a report that cannot be written stops the upload."""
    if not path:
        return None
    try:
        return open(path, "w", encoding="utf-8", newline="")  # the caller closes it
    except OSError as exc:
        raise UserError(f"Cannot write the report {path!r}: {exc.strerror or exc}.") from None


def print_published(args: argparse.Namespace, status: UploadStatus) -> None:
    """The summary of an upload published without --wait."""
    if args.json:
        print(json.dumps({**status.to_json(), "complete": False, **status.extra}))
    else:
        print(
            f"Upload {status.upload_id}: {status.published} commands published to batch "
            f"{status.batch_id}{', ' + str(len(status.refused)) + ' rows refused' if status.refused else ''}.\n"
            f"Follow it with: participants status {status.upload_id}"
        )


def print_followed(args: argparse.Namespace, status: UploadStatus) -> int:
    """The summary of a followed upload, and a sentence on stderr when --timeout came first."""
    if args.json:
        print(json.dumps({**status.to_json(), **status.extra}))
    else:
        print(status.render())
        if args.report:
            print(f"  report: {args.report}")
    if not status.completed:
        print(
            f"Timed out after {args.timeout:g}s with {status.processed} of {status.published} results; the upload "
            f"goes on. Follow it with: participants status {status.upload_id}",
            file=sys.stderr,
        )
    return status.exit_code()
