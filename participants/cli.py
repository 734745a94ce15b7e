"""`participants`: the one command line, and the composition point that wires settings, store and Kafka.

Errors reach the user as a sentence and an exit code, never a traceback:
0 ok · 1 broker or database unreachable · 2 unusable input or arguments · 3 some rows rejected ·
4 --timeout reached before the last result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

import psycopg2
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError

from enrolment import logs
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings

EXIT_OK, EXIT_UNREACHABLE, EXIT_INPUT, EXIT_REJECTED, EXIT_TIMEOUT = 0, 1, 2, 3, 4


class UserError(Exception):
    """A problem the user can fix; printed as one sentence with its exit code."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _engine(settings: Settings) -> Engine:
    return create_engine(settings.database_url, pool_pre_ping=True)


def _db_unreachable(settings: Settings, exc: BaseException) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"Cannot reach PostgreSQL ({_redact(settings.database_url)}): {first}", EXIT_UNREACHABLE)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


# ---------------------------------------------------------------------------- db / imports
def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.store import migrate

    migrate.upgrade(settings.database_url)
    print("database is at the latest schema")
    return EXIT_OK


def _import(args: argparse.Namespace, settings: Settings, kind: str) -> int:
    from processor.imports import ImportFileError, format_report, import_batches, import_users

    fn = import_users if kind == "users" else import_batches
    try:
        with _open_binary(args.file) as stream:
            report = fn(_engine(settings), stream)
    except ImportFileError as exc:
        raise UserError(f"{args.file}: {exc}") from None
    print(format_report(report, kind))
    return EXIT_REJECTED if report.errors else EXIT_OK


def _open_binary(path: str) -> Any:
    from enrolment.files import InputError, open_input

    try:
        return open_input(path)
    except InputError as exc:
        raise UserError(exc.message) from None


def cmd_batches_show(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            """
            SELECT b.batch_id, b.course_id, b.course_name, b.state, b.enrollment_type, b.status, b.start_date,
                   b.end_date, b.participant_count,
                   coalesce(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}')
            FROM course_batches b LEFT JOIN batch_mentors m ON m.batch_id = b.batch_id
            WHERE b.batch_id = %s GROUP BY b.batch_id
            """,
            (args.batch_id,),
        )
        row = cur.fetchone()
    finally:
        raw.close()
    if row is None:
        raise UserError(f"Batch {args.batch_id} does not exist.", EXIT_INPUT)
    info = {
        "batch_id": row[0],
        "course_id": row[1],
        "course_name": row[2],
        "state": row[3],
        "enrollment_type": row[4],
        "status": row[5],
        "start_date": row[6].isoformat() if row[6] else None,
        "end_date": row[7].isoformat() if row[7] else None,
        "participant_count": row[8],
        "mentors": list(row[9]),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {', '.join(v) if isinstance(v, list) else v}")
    return EXIT_OK


# ---------------------------------------------------------------------------- uploads
def cmd_upload(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.files import InputError, read_participants, validate_file
    from producer.publish import UploadRequest

    id_type = args.id_type.upper() if args.id_type else None
    stream = _open_binary(args.file)
    try:
        stream = _rereadable(stream)
        start = stream.tell()
        # Read the whole file once before publishing: a file-level problem (no id column, invalid UTF-8 or
        # a broken row far down) must stop us before anything is published.
        try:
            validate_file(stream, id_type)
        except InputError as exc:
            raise UserError(f"{args.file}: {exc.message} Nothing was published.") from None
        stream.seek(start)
        request = UploadRequest(
            batch_id=args.batch,
            action="ADD" if args.action == "add" else "REMOVE",
            requested_by=args.requester,
            kind=args.action,
            dry_run=args.dry_run,
            file_name=None if args.file == "-" else Path(args.file).name,
        )
        return _publish_and_follow(args, settings, request, read_participants(stream, id_type))
    finally:
        stream.close()


def _publish_and_follow(
    args: argparse.Namespace,
    settings: Settings,
    request: Any,
    rows: Any,
    origin: Callable[[int], tuple[str | None, int | None]] | None = None,
) -> int:
    """Publishes an upload, then (with --wait) follows its results; prints the summary; writes the report."""
    from producer.follow import ResultFollower, UploadStatus, write_report
    from producer.publish import BrokerUnavailable, Progress, publish_upload

    report_out: TextIO | None = None
    follower: ResultFollower | None = None
    if args.report:
        try:
            report_out = open(args.report, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UserError(f"Cannot write the report {args.report!r}: {exc.strerror or exc}.") from None
    try:
        codec = default_codec()
        try:
            follower = ResultFollower(settings, codec) if args.wait else None
            published = publish_upload(
                settings,
                codec,
                request,
                rows,
                progress=Progress("published"),
                keep_rows=bool(args.report),
                origin=origin,
            )
        except BrokerUnavailable as exc:
            raise UserError(str(exc), EXIT_UNREACHABLE) from None
        refused = [
            {"line": r.line, "identifier": r.identifier, "reason": r.reason, "message": r.message}
            for r in published.refused
        ]
        status = UploadStatus(
            upload_id=published.upload_id,
            batch_id=request.batch_id,
            kind=request.kind,
            dry_run=request.dry_run,
            published=published.published,
            refused=refused,
        )
        if follower is None:
            if args.json:
                print(json.dumps({**status.to_json(), "complete": False}))
            else:
                print(
                    f"Upload {published.upload_id}: {published.published} commands published to batch "
                    f"{request.batch_id}{', ' + str(len(refused)) + ' rows refused' if refused else ''}.\n"
                    f"Follow it with: participants status {published.upload_id}"
                )
            if report_out is not None:
                write_report(report_out, {}, published.refused, published.accepted_rows)
            return EXIT_REJECTED if refused else EXIT_OK
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
    if args.json:
        print(json.dumps(status.to_json()))
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


def cmd_derived(args: argparse.Namespace, settings: Settings) -> int:
    """`retry` and `undo`: uploads built from an earlier upload's recorded outcomes."""
    from producer.derived import UnknownUpload, plan_retry, plan_undo
    from producer.publish import UploadRequest

    raw = _engine(settings).raw_connection()
    try:
        cur = raw.cursor()
        try:
            if args.command == "retry":
                reasons = {r.strip().upper() for r in args.reasons.split(",") if r.strip()} if args.reasons else None
                plan = plan_retry(cur, args.upload_id, reasons, args.requester)
            else:
                plan = plan_undo(cur, args.upload_id, args.requester)
        except UnknownUpload as exc:
            raise UserError(str(exc)) from None
        raw.commit()
    finally:
        raw.close()
    request = UploadRequest(
        batch_id=plan.batch_id,
        action=plan.action,
        requested_by=plan.requested_by,
        kind=plan.kind,
        dry_run=args.dry_run,
        parent_upload_id=plan.parent_upload_id,
    )
    if not args.json:
        todo = sum(1 for r in plan.rows if not hasattr(r, "reason"))
        print(f"{plan.kind} of {plan.parent_upload_id}: {todo} rows to {plan.action.lower()}", file=sys.stderr)
    return _publish_and_follow(args, settings, request, plan.rows, origin=plan.origin)


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from producer.dead_letters import list_dead_letters, replay_dead_letters
    from producer.publish import BrokerUnavailable

    raw = _engine(settings).raw_connection()
    try:
        if args.sub == "list":
            letters = list_dead_letters(raw.cursor(), include_replayed=args.all)
            raw.commit()
            if args.json:
                print(json.dumps({"dead_letters": [d.to_json() for d in letters]}))
            else:
                for d in letters:
                    when = f" replayed {d.replayed_at:%Y-%m-%d %H:%M}" if d.replayed_at else ""
                    print(
                        f"#{d.id} {d.source_topic}[{d.partition}]@{d.offset} {d.reason}: {d.detail} "
                        f"({d.size} bytes, {d.dead_lettered_at:%Y-%m-%d %H:%M}){when}"
                    )
                if not letters:
                    print("no dead letters")
            return EXIT_OK
        try:
            done = replay_dead_letters(settings, raw, args.id)
        except BrokerUnavailable as exc:
            raise UserError(str(exc), EXIT_UNREACHABLE) from None
        print(f"replayed {len(done)} dead letters to {settings.topics.commands}: {done}")
        return EXIT_OK
    finally:
        raw.close()


def _rereadable(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself when it can seek, else (a pipe on stdin) its bytes spooled to a temporary file."""
    if stream.seekable():
        return stream
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    shutil.copyfileobj(stream, spool, 1 << 20)
    stream.close()
    spool.seek(0)
    return cast(BinaryIO, spool)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from producer.follow import status_from_store

    raw = _engine(settings).raw_connection()
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


# ---------------------------------------------------------------------------- processor
def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    from processor import metrics
    from processor.engine import Fatal, Processor

    logs.setup(args.log_level)
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    metrics.serve(port)
    processor = Processor(
        settings,
        _engine(settings),
        default_codec(),
        group=args.group,
        instance_id=args.instance_id,
        until_idle=args.until_idle,
    )
    processor.install_signal_handlers()
    try:
        return processor.run()
    except Fatal as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None


def cmd_store_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from processor.rebuild import StoreNotEmpty, rebuild

    try:
        report = rebuild(settings, _engine(settings), default_codec())
    except StoreNotEmpty as exc:
        raise UserError(str(exc)) from None
    except (LookupError, TimeoutError) as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None
    print(
        f"store rebuilt: {report.enrolments} enrolments from {settings.topics.enrollments}, "
        f"{report.ledger_rows} ledger rows from {settings.topics.results}, {report.uploads} uploads, "
        f"{report.batches_recounted} batch counts set"
        + (f", {report.undecodable} undecodable messages skipped" if report.undecodable else "")
    )
    return EXIT_OK


def cmd_store_verify(args: argparse.Namespace, settings: Settings) -> int:
    from processor.rebuild import verify

    try:
        report = verify(settings, _engine(settings), default_codec(), set(args.batch) if args.batch else None)
    except (LookupError, TimeoutError) as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None
    if args.json:
        print(json.dumps({**vars(report), "ok": report.ok}))
    else:
        print(f"compared {report.compared} enrolments with {settings.topics.enrollments}")
        for b, u in report.missing_in_store:
            print(f"  MISSING_IN_STORE  batch {b} user {u}")
        for b, u in report.extra_in_store:
            print(f"  EXTRA_IN_STORE    batch {b} user {u}")
        for b, u, what in report.different:
            print(f"  DIFFERENT         batch {b} user {u}: {what}")
        for b, have, want in report.wrong_counts:
            print(f"  WRONG_COUNT       batch {b}: participant_count {have}, enrolments {want}")
        print("no differences" if report.ok else "differences found")
    return EXIT_OK if report.ok else EXIT_REJECTED


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Re-drives the rules over the commands history in a group of its own; the running processor is undisturbed."""
    from datetime import datetime

    from processor.replay import replay

    logs.setup(args.log_level)
    start_ms: int | None = None
    if args.from_time:
        try:
            start_ms = int(datetime.fromisoformat(args.from_time).timestamp() * 1000)
        except ValueError:
            raise UserError(f"--from-time {args.from_time!r} is not an ISO 8601 date-time.") from None
    outcome = replay(
        settings,
        _engine(settings),
        default_codec(),
        start_time_ms=start_ms,
        upload_id=args.upload,
        dry_run=args.dry_run,
    )
    group, ends = outcome.group, outcome.end_offsets
    report = outcome.report
    summary = {
        "group": group,
        "dry_run": args.dry_run,
        "range": {"from": args.from_time or "beginning", "upload": args.upload, "end_offsets": ends},
        "already_applied": {r: n for (st, r), n in sorted(report.items()) if st == "already applied"},
        ("would_apply" if args.dry_run else "applied_now"): {
            r: n for (st, r), n in sorted(report.items()) if st in ("applied now", "would apply")
        },
        "dead_lettered": report.get(("dead-lettered", "UNDECODABLE"), 0),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"replay {'(dry run) ' if args.dry_run else ''}of {settings.topics.commands} up to {ends}")
        for (status, reason), n in sorted(report.items()):
            print(f"  {status:<16} {reason:<22} {n}")
        if not report:
            print("  nothing in range")
    return EXIT_OK


def cmd_api_token(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.store.tokens import create_token

    try:
        token = create_token(_engine(settings), args.user, args.label or "")
    except LookupError as exc:
        raise UserError(str(exc)) from None
    print(token)
    print(f"(a bearer token for {args.user}; only its hash is stored, keep it now)", file=sys.stderr)
    return EXIT_OK


def cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    from participants.demo_data import write_demo_data

    files = write_demo_data(Path(args.out), args.teachers_per_state)
    for name, path in vars(files).items():
        print(f"{name}: {path}")
    return EXIT_OK


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="participants", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the store to the latest schema").set_defaults(func=cmd_db_upgrade)

    users = sub.add_parser("users", help="reference data: users").add_subparsers(dest="sub", required=True)
    ui = users.add_parser("import", help="upsert users from a CSV (user_id,state_id,state,name,roles,status)")
    ui.add_argument("file")
    ui.set_defaults(func=lambda a, s: _import(a, s, "users"))

    batches = sub.add_parser("batches", help="reference data: course batches").add_subparsers(dest="sub", required=True)
    bi = batches.add_parser("import", help="upsert batches from a CSV")
    bi.add_argument("file")
    bi.set_defaults(func=lambda a, s: _import(a, s, "batches"))
    bs = batches.add_parser("show", help="a batch and its participant count")
    bs.add_argument("batch_id")
    bs.add_argument("--json", action="store_true")
    bs.set_defaults(func=cmd_batches_show)

    for action in ("add", "remove"):
        up = sub.add_parser(action, help=f"{action} the participants listed in FILE ('-' for stdin)")
        up.add_argument("file", metavar="FILE")
        up.add_argument("--batch", required=True, help="batch id")
        up.add_argument("--as", dest="requester", required=True, metavar="ADMIN_USER_ID", help="requesting admin")
        up.add_argument("--id-type", choices=["user_id", "state_id"], help="for a plain list without header")
        up.add_argument("--dry-run", action="store_true", help="evaluate every row, change nothing")
        up.add_argument("--wait", action="store_true", help="follow the results and print the summary")
        up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait (default 300)")
        up.add_argument("--json", action="store_true", help="print the summary as one JSON object")
        up.add_argument("--report", metavar="PATH", help="write a CSV line per input row")
        up.set_defaults(func=cmd_upload, action=action)

    for name, help_text in (
        ("retry", "republish the rows of an upload that were rejected (after fixing the data)"),
        ("undo", "reverse exactly what an upload changed (drift is left alone and reported)"),
    ):
        dp = sub.add_parser(name, help=help_text)
        dp.add_argument("upload_id")
        if name == "retry":
            dp.add_argument("--reasons", help="comma-separated reason codes (default: every rejected row)")
        dp.add_argument("--as", dest="requester", metavar="ADMIN_USER_ID", help="default: the original requester")
        dp.add_argument("--dry-run", action="store_true")
        dp.add_argument("--wait", action="store_true")
        dp.add_argument("--timeout", type=float, default=300.0)
        dp.add_argument("--json", action="store_true")
        dp.add_argument("--report", metavar="PATH")
        dp.set_defaults(func=cmd_derived)

    dl = sub.add_parser("dead-letters", help="messages the processor could not decode").add_subparsers(
        dest="sub", required=True
    )
    dll = dl.add_parser("list", help="what was dead-lettered, and why")
    dll.add_argument("--all", action="store_true", help="include those already replayed")
    dll.add_argument("--json", action="store_true")
    dll.set_defaults(func=cmd_dead_letters)
    dlr = dl.add_parser("replay", help="send dead letters back to the commands topic (once the cause is fixed)")
    dlr.add_argument("--id", type=int, action="append", help="dead letter id (repeatable; default: all not replayed)")
    dlr.set_defaults(func=cmd_dead_letters)

    st = sub.add_parser("status", help="the summary of an upload so far")
    st.add_argument("upload_id")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    pr = sub.add_parser("process", help="run the processor (a member of the consumer group)")
    pr.add_argument("--until-idle", action="store_true", help="exit when the group is caught up")
    pr.add_argument("--instance-id", help="stable id of this instance (static membership, transactional id)")
    pr.add_argument("--group", help="consumer group (default CONSUMER_GROUP)")
    pr.add_argument("--metrics-port", type=int, help="Prometheus port (default METRICS_PORT; 0 = off)")
    pr.add_argument("--log-level", default="INFO")
    pr.set_defaults(func=cmd_process)

    rp = sub.add_parser("replay", help="re-drive the rules over the commands history (own consumer group)")
    where = rp.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-beginning", action="store_true")
    where.add_argument("--from-time", metavar="ISO8601")
    where.add_argument("--upload", metavar="UPLOAD_ID", help="only this upload's commands")
    rp.add_argument("--dry-run", action="store_true", help="report only: write and publish nothing")
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--log-level", default="WARNING")
    rp.set_defaults(func=cmd_replay)

    store = sub.add_parser("store", help="rebuild or verify the store against Kafka").add_subparsers(
        dest="sub", required=True
    )
    store.add_parser("rebuild", help="restore an empty store from the changelog and results topics").set_defaults(
        func=cmd_store_rebuild
    )
    sv = store.add_parser("verify", help="compare the store with the changelog (exit 3 on differences)")
    sv.add_argument("--batch", action="append", help="only these batches (repeatable)")
    sv.add_argument("--json", action="store_true")
    sv.set_defaults(func=cmd_store_verify)

    tokens = sub.add_parser("api-tokens", help="bearer tokens for the Sunbird-compatible API").add_subparsers(
        dest="sub", required=True
    )
    tc = tokens.add_parser("create", help="create a token for an admin user and print it")
    tc.add_argument("--user", required=True, help="platform user id of the admin")
    tc.add_argument("--label", help="what the token is for")
    tc.set_defaults(func=cmd_api_token)

    dd = sub.add_parser("demo-data", help="write the demo CSVs (users, batches, a 10k upload, progress)")
    dd.add_argument("--out", default="demo-data")
    dd.add_argument("--teachers-per-state", type=int, default=None, help="default: KA 10,500 and MH 1,500")
    dd.set_defaults(func=cmd_demo_data)

    # ------------------------------------------------------------ dashboard & course progress (dashboard/cli.py)
    from dashboard.cli import add_commands as add_dashboard_commands

    add_dashboard_commands(sub)
    # ------------------------------------------------------------ end of dashboard & course progress
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        code: int = args.func(args, settings)
        return code
    except UserError as exc:
        print(f"participants: {exc}", file=sys.stderr)
        return exc.code
    except OperationalError as exc:
        print(f"participants: {_db_unreachable(settings, exc.orig or exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except psycopg2.OperationalError as exc:  # Engine.raw_connection() raises the driver's error unwrapped
        print(f"participants: {_db_unreachable(settings, exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("participants: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a sentence, not a traceback
        import logging

        logging.getLogger("participants").debug("unexpected error", exc_info=True)
        if args.command == "process":
            logging.getLogger("processor").exception("processor stopped on an unexpected error")
        print(f"participants: unexpected error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
