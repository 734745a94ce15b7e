"""The processor's commands: `process`, `replay`, `store rebuild|verify`, `dead-letters`, `users|batches import`.

Each handler is a thin call into the app that turns its failures into a :class:`UserError`. Heavy imports
(the engine, confluent_kafka) happen inside the handlers so every other command starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from enrolment import logs
from enrolment.commands import SubCommands, group
from enrolment.errors import EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, UserError
from enrolment.files import open_binary
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store.db import engine as db_engine


def add_commands(sub: SubCommands) -> None:
    """Adds the processor's commands to the `participants` parser."""
    _add_reference_imports(sub)
    pr = sub.add_parser("process", help="run the processor (a member of the consumer group)")
    pr.add_argument("--until-idle", action="store_true", help="exit when the group is caught up")
    pr.add_argument("--instance-id", help="stable id of this instance (static membership, transactional id)")
    pr.add_argument("--group", help="consumer group (default CONSUMER_GROUP)")
    pr.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus port (default METRICS_PORT; 0 = off), on METRICS_HOST (default 127.0.0.1)",
    )
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
    _add_store_commands(sub)
    _add_dead_letter_commands(sub)


def _add_reference_imports(sub: SubCommands) -> None:
    users = group(sub, "users", "reference data: users")
    ui = users.add_parser(
        "import",
        help="upsert users from a CSV (user_id,state_id,state,name,roles,status[,served_states: a;b]"
        "[,org_name,district,block,school_name,school_udise])",
    )
    ui.add_argument("file")
    ui.set_defaults(func=cmd_import, kind="users")
    bi = group(sub, "batches", "reference data: course batches").add_parser("import", help="upsert batches from a CSV")
    bi.add_argument("file")
    bi.set_defaults(func=cmd_import, kind="batches")


def _add_store_commands(sub: SubCommands) -> None:
    store = group(sub, "store", "rebuild or verify the store against Kafka")
    store.add_parser("rebuild", help="restore an empty store from the changelog and results topics").set_defaults(
        func=cmd_store_rebuild
    )
    sv = store.add_parser("verify", help="compare the store with the changelog (exit 3 on differences)")
    sv.add_argument("--batch", action="append", help="only these batches (repeatable)")
    sv.add_argument("--json", action="store_true")
    sv.set_defaults(func=cmd_store_verify)


def _add_dead_letter_commands(sub: SubCommands) -> None:
    dl = group(sub, "dead-letters", "messages the processor could not decode")
    dll = dl.add_parser("list", help="what was dead-lettered, and why")
    dll.add_argument("--all", action="store_true", help="include those already replayed")
    dll.add_argument("--json", action="store_true")
    dll.set_defaults(func=cmd_dead_letters_list)
    dlr = dl.add_parser("replay", help="send dead letters back to the topic they came from (once the cause is fixed)")
    dlr.add_argument("--id", type=int, action="append", help="dead letter id (repeatable; default: all not replayed)")
    dlr.set_defaults(func=cmd_dead_letters_replay)


# ---------------------------------------------------------------------------- reference data
def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """`users import` and `batches import`: streaming upserts, bad rows reported by line (exit 3)."""
    from processor.imports import ImportFileError, format_report, import_batches, import_users

    fn = import_users if args.kind == "users" else import_batches
    try:
        with open_binary(args.file) as stream:
            report = fn(db_engine(settings), stream)
    except ImportFileError as exc:
        raise UserError(f"{args.file}: {exc}") from None
    print(format_report(report, args.kind))
    return EXIT_REJECTED if report.errors else EXIT_OK


# ---------------------------------------------------------------------------- the processor
def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    from processor import metrics
    from processor.engine import Fatal, Processor

    logs.setup(args.log_level)
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    processor = Processor(
        settings,
        db_engine(settings),
        default_codec(),
        group=args.group,
        instance_id=args.instance_id,
        until_idle=args.until_idle,
    )
    metrics.serve(port, settings.metrics_host, processor.health)  # /metrics and /healthz
    processor.install_signal_handlers()
    try:
        return processor.run()
    except Fatal as exc:
        hint = f" Is a second processor running with instance id {processor.instance_id}?"
        raise UserError(f"{exc}{hint if 'fenced' in str(exc).lower() else ''}", EXIT_UNREACHABLE) from None


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Re-drives the rules over the commands history in a group of its own; the running processor is undisturbed."""
    from processor.replay import replay

    logs.setup(args.log_level)
    outcome = replay(
        settings,
        db_engine(settings),
        default_codec(),
        start_time_ms=_replay_start_ms(args.from_time),
        upload_id=args.upload,
        dry_run=args.dry_run,
    )
    report, ends = outcome.report, outcome.end_offsets
    summary = {
        "group": outcome.group,
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


def _replay_start_ms(from_time: str | None) -> int | None:
    from datetime import datetime

    if not from_time:
        return None
    try:
        return int(datetime.fromisoformat(from_time).timestamp() * 1000)
    except ValueError:
        raise UserError(f"--from-time {from_time!r} is not an ISO 8601 date-time.") from None


# ---------------------------------------------------------------------------- the store against Kafka
def cmd_store_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from processor.rebuild import StoreNotEmpty, rebuild

    try:
        report = rebuild(settings, db_engine(settings), default_codec())
    except StoreNotEmpty as exc:
        raise UserError(str(exc)) from None
    except (LookupError, TimeoutError) as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None
    print(
        f"store rebuilt: {report.enrolments} enrolments from {settings.topics.enrollments}, "
        f"{report.ledger_rows} ledger rows from {settings.topics.results}, {report.uploads} uploads, "
        f"{report.completions} course completions from {settings.topics.course_progress}, "
        f"{report.batches_recounted} batch counts set"
        + (f", {report.undecodable} undecodable messages skipped" if report.undecodable else "")
    )
    return EXIT_OK


def cmd_store_verify(args: argparse.Namespace, settings: Settings) -> int:
    from processor.rebuild import verify

    try:
        report = verify(settings, db_engine(settings), default_codec(), set(args.batch) if args.batch else None)
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


# ---------------------------------------------------------------------------- dead letters
def cmd_dead_letters_list(args: argparse.Namespace, settings: Settings) -> int:
    from processor.dead_letters import list_dead_letters

    raw = db_engine(settings).raw_connection()
    try:
        letters = list_dead_letters(raw.cursor(), include_replayed=args.all)
        raw.commit()
    finally:
        raw.close()
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


def cmd_dead_letters_replay(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.kafka.clients import BrokerUnavailable
    from processor.dead_letters import replay_dead_letters

    raw = db_engine(settings).raw_connection()
    try:
        done, held = replay_dead_letters(settings, raw, args.id)
    except BrokerUnavailable as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None
    finally:
        raw.close()
    print(f"replayed {len(done)} dead letters to the topics they came from: {done}")
    if not held:
        return EXIT_OK
    print(
        f"participants: dead letters {held} came from course progress, which the processor may not write; they "
        "were not replayed. Correct the rows and republish them with 'participants progress publish'.",
        file=sys.stderr,
    )
    return EXIT_REJECTED
