"""The producer's commands: `add`, `remove`, `retry`, `undo`, `status`, `batches show` and `progress publish`.

Each handler is a thin call into the app that turns its failures into a :class:`UserError`; an upload with
``--wait`` is published and then followed to its summary, and the exit code says how it went.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrolment.commands import SubCommands, group, operator
from enrolment.errors import EXIT_INPUT, EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, UserError
from enrolment.files import open_binary, rereadable
from enrolment.messages.codec import Codec, default_codec
from enrolment.settings import Settings
from enrolment.store.db import direct as db_engine  # psycopg2 connections: no SQLAlchemy import

if TYPE_CHECKING:
    from enrolment.files import InputRow, RefusedRow
    from producer.follow import UploadStatus
    from producer.plan_text import Waiting
    from producer.publish import Published, UploadRequest
    from producer.remote import Remote


def add_commands(sub: SubCommands) -> None:
    """Adds the producer's commands to the `participants` parser."""
    for action in ("add", "remove"):
        up = sub.add_parser(action, help=f"{action} the participants listed in FILE ('-' for stdin)")
        up.add_argument("file", metavar="FILE")
        up.add_argument("--batch", required=True, help="batch id")
        up.add_argument(
            "--as",
            dest="requester",
            metavar="ADMIN_USER_ID",
            help="requesting admin (direct path only; required there)",
        )
        up.add_argument("--server", help="upload through this dashboard's API (default: PARTICIPANTS_SERVER)")
        up.add_argument("--id-type", choices=["user_id", "state_id"], help="for a plain list without header")
        up.add_argument("--dry-run", action="store_true", help="evaluate every row, change nothing")
        up.add_argument("--wait", action="store_true", help="follow the results and print the summary")
        up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait (default 300)")
        up.add_argument("--json", action="store_true", help="print the summary as one JSON object")
        up.add_argument("--report", metavar="PATH", help="write a CSV line per input row")
        allow_repeat_flag(up)
        if action == "remove":
            _include_completed_flag(up)
        up.set_defaults(func=cmd_upload, action=action, include_completed=False)
    from producer.plan_cli import add_plan_commands

    _add_derived_commands(sub)
    add_plan_commands(sub)
    st = sub.add_parser("status", help="the summary of an upload so far")
    st.add_argument("upload_id")
    st.add_argument("--json", action="store_true")
    st.add_argument("--server", help="ask this dashboard's API (default: PARTICIPANTS_SERVER)")
    st.set_defaults(func=cmd_status)
    login = sub.add_parser("login", help="save an API token for a dashboard, for the commands' server mode")
    login.add_argument("--server", help="the dashboard's URL (default: PARTICIPANTS_SERVER)")
    login.add_argument("--token-stdin", action="store_true", help="read the token from one line of stdin")
    login.set_defaults(func=cmd_login)
    bs = group(sub, "batches", "reference data: course batches").add_parser(
        "show", help="a batch and its participant count"
    )
    bs.add_argument("batch_id")
    bs.add_argument("--json", action="store_true")
    bs.set_defaults(func=cmd_batches_show)
    pub = group(sub, "progress", "learners' course progress").add_parser(
        "publish", help="publish course progress from FILE (batch_id,user_id,progress,completed_at[,updated_at])"
    )
    pub.add_argument("file", metavar="FILE")
    pub.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    pub.set_defaults(func=cmd_progress_publish)


def _add_derived_commands(sub: SubCommands) -> None:
    for name, help_text in (
        ("retry", "republish the rows of an upload that were rejected (after fixing the data)"),
        ("undo", "reverse exactly what an upload changed (drift is left alone and reported)"),
    ):
        dp = sub.add_parser(name, help=help_text)
        dp.add_argument("upload_id")
        if name == "retry":
            dp.add_argument("--reasons", help="comma-separated reason codes (default: every rejected row)")
        dp.add_argument(
            "--as",
            dest="requester",
            metavar="ADMIN_USER_ID",
            help="the admin running it (direct path only, required there; it is recorded)",
        )
        dp.add_argument("--server", help="submit it through this dashboard's API (default: PARTICIPANTS_SERVER)")
        dp.add_argument("--dry-run", action="store_true")
        dp.add_argument("--wait", action="store_true")
        dp.add_argument("--timeout", type=float, default=300.0)
        dp.add_argument("--json", action="store_true")
        dp.add_argument("--report", metavar="PATH")
        if name == "undo":
            _include_completed_flag(dp)
        dp.set_defaults(func=cmd_derived, include_completed=False)


def allow_repeat_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-repeat",
        action="store_true",
        help="send a file even though it was applied to this batch in the last 30 days",
    )


def _include_completed_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--include-completed",
        action="store_true",
        help="also remove participants who completed the course (refused as COURSE_COMPLETED without it)",
    )


# ---------------------------------------------------------------------------- uploads
def cmd_upload(args: argparse.Namespace, settings: Settings) -> int:
    """`add` and `remove`: the whole file is checked first, so an unusable file publishes nothing."""
    from enrolment.files import InputError, read_participants, validate_file
    from producer.plan_cli import plan_for_team, refuse_repeat, team_approval_needed
    from producer.plans import file_hash, record_published
    from producer.publish import UploadRequest

    server = _server_url(args, settings)
    if server is not None:
        from producer.server_mode import through_server

        return through_server(args, server, settings, submit_file)
    if not (args.requester or "").strip():
        raise UserError(f"{args.action} needs --as ADMIN_USER_ID (or --server URL). Nothing was published.")
    id_type = args.id_type.upper() if args.id_type else None
    stream = open_binary(args.file)
    try:
        stream = rereadable(stream)
        start = stream.tell()
        # Read the whole file once before publishing: a file-level problem (no id column, invalid UTF-8 or
        # a broken row far down) must stop us before anything is published.
        try:
            validate_file(stream, id_type)
        except InputError as exc:
            raise UserError(f"{args.file}: {exc.message} Nothing was published.") from None
        stream.seek(start)
        content_hash = file_hash(stream)
        after: Callable[[UploadRequest], None] | None = None
        if not args.dry_run:
            engine = db_engine(settings)
            if team_approval_needed(engine, args.batch, args.requester):
                return plan_for_team(args, settings, engine, read_participants(stream, id_type), content_hash)
            refuse_repeat(engine, args.batch, content_hash, args.allow_repeat)
            after = functools.partial(record_published, engine)
        request = UploadRequest(
            batch_id=args.batch,
            action="ADD" if args.action == "add" else "REMOVE",
            requested_by=args.requester,
            kind=args.action,
            dry_run=args.dry_run,
            file_name=None if args.file == "-" else Path(args.file).name,
            submitted_by=operator(),
            include_completed=args.include_completed,
            content_hash=content_hash,
        )
        return _publish_and_follow(args, settings, request, read_participants(stream, id_type), after=after)
    finally:
        stream.close()


def cmd_derived(args: argparse.Namespace, settings: Settings) -> int:
    """`retry` and `undo`: uploads built from an earlier upload's recorded outcomes."""
    from producer.derived import UnknownUpload, plan_retry, plan_undo, reason_set
    from producer.plan_cli import derived_for_team
    from producer.publish import UploadRequest

    server = _server_url(args, settings)
    if server is not None:
        from producer.server_mode import through_server

        return through_server(args, server, settings, submit_derived)
    requester = derived_requester(args)
    engine = db_engine(settings)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            if args.command == "retry":
                plan = plan_retry(cur, args.upload_id, reason_set(args.reasons), requester)
            else:
                plan = plan_undo(cur, args.upload_id, requester)
        except UnknownUpload as exc:
            raise UserError(str(exc)) from None
        raw.commit()
    finally:
        raw.close()
    if not args.dry_run and (waiting := derived_for_team(args, settings, engine, plan)) is not None:
        return waiting
    request = UploadRequest(
        batch_id=plan.batch_id,
        action=plan.action,
        requested_by=plan.requested_by,
        kind=plan.kind,
        dry_run=args.dry_run,
        parent_upload_id=plan.parent_upload_id,
        submitted_by=operator(),
        include_completed=args.include_completed,
    )
    if not args.json:
        todo = sum(1 for r in plan.rows if not hasattr(r, "reason"))
        print(f"{plan.kind} of {plan.parent_upload_id}: {todo} rows to {plan.action.lower()}", file=sys.stderr)
    return _publish_and_follow(args, settings, request, plan.rows, origin=plan.origin)


def derived_requester(args: argparse.Namespace) -> str:
    """Who runs `retry` or `undo`: recorded as its requester, so it must be said (never the original's)."""
    requester = (args.requester or "").strip()
    if not requester:
        raise UserError(
            f"{args.command} needs --as ADMIN_USER_ID: the admin running it is recorded as its requester "
            "(the original upload's requester is not assumed). Nothing was published."
        )
    return requester


def _publish_and_follow(
    args: argparse.Namespace,
    settings: Settings,
    request: UploadRequest,
    rows: Iterable[InputRow | RefusedRow],
    origin: Callable[[int], tuple[str | None, int | None]] | None = None,
    after: Callable[[UploadRequest], None] | None = None,
) -> int:
    """Publishes an upload, then (with --wait) follows its results; prints the summary; writes the report.
    ``after`` is called once it is published (``add``/``remove`` record their file: the resubmission check)."""
    from producer.publish import Progress, publish_upload
    from producer.submit import publish_and_follow

    def publish(codec: Codec) -> tuple[UploadRequest, Published]:
        published = publish_upload(
            settings, codec, request, rows, progress=Progress("published"), keep_rows=bool(args.report), origin=origin
        )
        if after is not None:
            after(request)
        return request, published

    return publish_and_follow(args, settings, publish)


def _server_url(args: argparse.Namespace, settings: Settings) -> str | None:
    """``producer.remote.server_url``; on the direct path (no --server, no PARTICIPANTS_SERVER) without importing
    producer.remote, whose HTTP client's import costs ~0.4 s of an `add`'s start-up."""
    if not (args.server or settings.client_server).strip():
        return None
    from producer.remote import server_url

    return server_url(args.server, settings.client_server)


# ---------------------------------------------------------------------------- server mode
def submit_file(args: argparse.Namespace, remote: Remote) -> UploadStatus | Waiting:
    """POSTs the file; the just-published summary (or the team's waiting plan), or the file's refusal as the
    direct path says it."""
    from producer.follow import UploadStatus
    from producer.plan_text import TEAM_WAITS, Waiting, summary_from_json
    from producer.remote import Refused

    params = {"batch_id": args.batch, "operation": args.action}
    if args.id_type:
        params["id_type"] = args.id_type
    if args.dry_run:
        params["dry_run"] = "true"
    if args.include_completed:
        params["include_completed"] = "true"
    if getattr(args, "allow_repeat", False):
        params["allow_repeat"] = "true"
    stream = open_binary(args.file)
    try:
        answer = remote.submit(stream, params, None if args.file == "-" else Path(args.file).name)
    except Refused as exc:
        why = exc.refusals[0]["message"] if exc.refusals else str(exc).removesuffix(" Nothing was published.")
        raise UserError(f"{args.file}: {why} Nothing was published.") from None
    finally:
        stream.close()
    if "plan_id" in answer:  # the implementation team's upload waits for a state admin: nothing published
        return Waiting(summary_from_json(answer), TEAM_WAITS)
    return UploadStatus(
        upload_id=answer["upload_id"],
        batch_id=args.batch,
        kind=args.action,
        dry_run=args.dry_run,
        published=int(answer["published"]),
        refused=list(answer["refused_rows"]),
        requested_by=answer.get("requested_by"),
        submitted_by=answer.get("submitted_by"),
    )


def submit_derived(args: argparse.Namespace, remote: Remote) -> UploadStatus | Waiting:
    """POSTs a retry or undo of an upload; the server plans it from the store and submits it as the token's user
    (the implementation team's, where its state requires approval, becomes a waiting plan)."""
    from producer.follow import UploadStatus
    from producer.plan_text import TEAM_WAITS, Waiting, summary_from_json

    params = {"dry_run": "true"} if args.dry_run else {}
    if args.include_completed:
        params["include_completed"] = "true"
    if args.command == "retry" and args.reasons:
        params["reasons"] = args.reasons
    answer = remote.derive(args.upload_id, args.command, params)
    if "plan_id" in answer:
        return Waiting(summary_from_json(answer), TEAM_WAITS)
    if not args.json:
        what = f"{answer['published']} rows to {str(answer['action']).lower()}"
        print(f"{answer['kind']} of {answer['parent_upload_id']}: {what}", file=sys.stderr)
    return UploadStatus(
        upload_id=answer["upload_id"],
        batch_id=answer["batch_id"],
        kind=answer["kind"],
        dry_run=args.dry_run,
        published=int(answer["published"]),
        refused=list(answer["refused_rows"]),
        requested_by=answer.get("requested_by"),
        submitted_by=answer.get("submitted_by"),
    )


def status_through_server(server: str, upload_id: str, settings: Settings) -> UploadStatus | None:
    from producer.remote import Remote, credentials_path, status_from_json, token_for

    remote = Remote(server, token_for(server, settings.client_token, credentials_path(settings.client_credentials)))
    try:
        found = remote.status(upload_id)
    finally:
        remote.close()
    return None if found is None else status_from_json(found)


def cmd_login(args: argparse.Namespace, settings: Settings) -> int:
    """Checks a token with the server, then saves it (mode 0600) for the commands' server mode."""
    import getpass

    from producer.remote import Remote, credentials_path, server_url, write_credentials

    server = server_url(args.server, settings.client_server)
    if server is None:
        raise UserError("login needs --server URL (or PARTICIPANTS_SERVER).")
    token = sys.stdin.readline() if args.token_stdin else getpass.getpass(f"API token for {server}: ")
    token = token.strip()
    if not token:
        raise UserError("No token was given; nothing was saved.")
    remote = Remote(server, token)
    try:
        remote.check_token()
    finally:
        remote.close()
    path = credentials_path(settings.client_credentials)
    write_credentials(path, server, token)
    print(f"Saved the token for {server} in {path} (readable only by you).")
    return EXIT_OK


# ---------------------------------------------------------------------------- reading the store
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from producer.follow import status_from_store
    from producer.remote import server_url

    server = server_url(args.server, settings.client_server)
    if server is not None:
        status = status_through_server(server, args.upload_id, settings)
    else:
        raw = db_engine(settings).raw_connection()
        try:
            status = status_from_store(raw.cursor(), args.upload_id)
        finally:
            raw.close()
    if status is None:
        raise UserError(f"No upload {args.upload_id} is known yet (no record and no results).", EXIT_INPUT)
    print(json.dumps(status.to_json()) if args.json else status.render())
    if not status.completed:
        return EXIT_OK
    return EXIT_REJECTED if status.rejected_total else EXIT_OK


def cmd_batches_show(args: argparse.Namespace, settings: Settings) -> int:
    info = _batch_info(settings, args.batch_id)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {', '.join(v) if isinstance(v, list) else v}")
    return EXIT_OK


def _batch_info(settings: Settings, batch_id: str) -> dict[str, Any]:
    """A batch with its mentors and participant count, as `batches show` prints it."""
    from enrolment.store import reference

    raw = db_engine(settings).raw_connection()
    try:
        found = reference.batch_details(raw.cursor(), [batch_id]).get(batch_id)
    finally:
        raw.close()
    if found is None:
        raise UserError(f"Batch {batch_id} does not exist.", EXIT_INPUT)
    b = found.batch
    return {
        "batch_id": b.batch_id,
        "course_id": b.course_id,
        "course_name": found.course_name,
        "state": b.state,
        "enrollment_type": b.enrollment_type,
        "status": b.status,
        "start_date": found.start_date.isoformat() if found.start_date else None,
        "end_date": found.end_date.isoformat() if found.end_date else None,
        "participant_count": b.participant_count,
        "mentors": list(found.mentors),
    }


def cmd_progress_publish(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.kafka.clients import BrokerUnavailable
    from producer.progress import ProgressFileError, format_report, publish_progress, read_progress

    stream = open_binary(args.file)
    try:
        rows = read_progress(stream)
        try:  # the header is checked on the first row: a bad file publishes nothing
            first = next(rows, None)
        except ProgressFileError as exc:
            raise UserError(f"{args.file}: {exc} Nothing was published.", EXIT_INPUT) from None
        if first is None:
            raise UserError(f"{args.file}: the file has no progress rows. Nothing was published.", EXIT_INPUT)
        try:
            report = publish_progress(settings, default_codec(), itertools.chain([first], rows))
        except ProgressFileError as exc:
            raise UserError(
                f"{args.file}: {exc} The rows before that point were published; fix the file and publish it again.",
                EXIT_INPUT,
            ) from None
        except BrokerUnavailable as exc:
            raise UserError(str(exc), EXIT_UNREACHABLE) from None
    finally:
        stream.close()
    if args.json:
        print(
            json.dumps(
                {
                    "topic": report.topic,
                    "published": report.published,
                    "refused": [{"line": r.line, "reason": r.reason, "message": r.message} for r in report.refused],
                }
            )
        )
    else:
        print(format_report(report))
    return EXIT_REJECTED if report.refused else EXIT_OK
