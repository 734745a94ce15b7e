"""Running a command through the dashboard's API (`--server`): the token, the submit, the follow, the report.

Shared by `add`/`remove`/`retry`/`undo` (producer.cli) and the plan commands (producer.plan_server): a submit
returns the upload's first summary — or, when the server made a plan that waits for a state admin instead
(the implementation team where its state requires approval, a sync over the breaker), that plan, printed as
the direct path prints it, exit 0.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TextIO

from enrolment.errors import EXIT_OK, EXIT_REJECTED, UserError
from enrolment.settings import Settings
from producer.follow import UploadStatus
from producer.plan_text import Waiting, print_waiting
from producer.remote import Remote


def remote_for(args: argparse.Namespace, server: str, settings: Settings, nothing: str = "published") -> Remote:
    """The server with this run's token; ``--as`` is refused (exit 2): the token's user is the requester."""
    from producer.remote import credentials_path, token_for

    if getattr(args, "requester", None) is not None:
        raise UserError(
            f"--as cannot be used with --server: the server records the token's user as the requester. "
            f"Nothing was {nothing}."
        )
    return Remote(server, token_for(server, settings.client_token, credentials_path(settings.client_credentials)))


def through_server(
    args: argparse.Namespace,
    server: str,
    settings: Settings,
    submit: Callable[[argparse.Namespace, Remote], UploadStatus | Waiting],
) -> int:
    """Submits through the API as the token's user, then (--wait) follows, prints and reports as the direct path."""
    from producer.submit import open_report, print_followed, print_published

    remote = remote_for(args, server, settings)
    report_out = open_report(args.report)
    try:
        status = submit(args, remote)
        if isinstance(status, Waiting):
            _drop_report(args.report, report_out)
            report_out = None
            print_waiting(args, status)
            return EXIT_OK
        if args.wait:
            status = follow_remote(args, remote, status)
        if report_out is not None:
            write_remote_report(report_out, remote, status)
    finally:
        remote.close()
        if report_out is not None:
            report_out.close()
    if not args.wait:
        print_published(args, status)
        return EXIT_REJECTED if status.refused else EXIT_OK
    return print_followed(args, status)


def _drop_report(path: str | None, out: TextIO | None) -> None:
    """Nothing was published, so no report (the direct path writes none either)."""
    if out is not None and path:
        out.close()
        os.unlink(path)


def follow_remote(args: argparse.Namespace, remote: Remote, status: UploadStatus) -> UploadStatus:
    """Polls the server until the upload is complete or --timeout passes (nothing published: complete now)."""
    from producer.remote import status_from_json

    if status.published == 0:
        status.completed = True
        return status
    found = remote.follow(status.upload_id, args.timeout)
    if found is None:
        return status
    followed = status_from_json(found)
    followed.extra = status.extra
    return followed


def write_remote_report(out: TextIO, remote: Remote, status: UploadStatus) -> None:
    """--report: the server's report.csv (the refused rows only when nothing was published)."""
    from enrolment.files import RefusedRow
    from producer.follow import write_report

    if status.published == 0:
        refused = [
            RefusedRow(r["line"], r["identifier"], r.get("id_type"), r["reason"], r["message"]) for r in status.refused
        ]
        write_report(out, {}, refused, {})
        return
    out.write(remote.report(status.upload_id).decode("utf-8"))
