"""The plan commands on the direct path: `plan add|remove|sync|show|approve|reject|settings` and `sync`.

Thin calls into :mod:`producer.plans`: a refusal becomes a sentence and its exit code (deciding a plan that
is not waiting: 1; an unknown plan or a repeated file: 2); an applied plan is followed like any upload.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrolment.commands import SubCommands, group, operator
from enrolment.errors import EXIT_OK, EXIT_UNREACHABLE, UserError
from enrolment.files import open_binary, rereadable
from enrolment.messages.codec import Codec, default_codec
from enrolment.settings import Settings
from enrolment.store.db import direct as db_engine  # psycopg2 connections: no SQLAlchemy import
from producer.plan_text import SYNC_WAITS, TEAM_WAITS, Waiting, print_plan, print_waiting, render_plan

if TYPE_CHECKING:
    from enrolment.files import InputRow, RefusedRow
    from enrolment.store.db import Connections as Engine  # SQLAlchemy's, or db.direct()
    from producer.derived import Derived
    from producer.plans import ApplyResult
    from producer.publish import Published, UploadRequest


def add_plan_commands(sub: SubCommands) -> None:
    """`plan …` and `sync` on the `participants` parser."""
    plans = group(sub, "plan", "plan an upload, then approve (apply) or reject it")
    for kind in ("add", "remove", "sync"):
        mk = plans.add_parser(kind, help=f"plan a{'n' if kind == 'add' else ''} {kind} of FILE: nothing changes yet")
        _file_options(mk, kind)
        mk.set_defaults(func=cmd_plan_make, kind=kind)
    sh = plans.add_parser("show", help="a plan: its status and counts")
    sh.add_argument("plan_id")
    _server_option(sh)
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--rows", metavar="OUTCOME", help="also list its rows of this outcome (APPLIED, SKIPPED, REJECTED)")
    sh.set_defaults(func=cmd_plan_show)
    for decision in ("approve", "reject"):
        dp = plans.add_parser(decision, help=f"{decision} a waiting plan (a state admin of the batch's state)")
        dp.add_argument("plan_id")
        dp.add_argument(
            "--as", dest="requester", metavar="ADMIN_USER_ID", help="the deciding state admin (direct path, required)"
        )
        _server_option(dp)
        dp.add_argument("--json", action="store_true")
        if decision == "approve":
            _follow_options(dp)
        dp.set_defaults(func=cmd_plan_decide, decision=decision)
    ex = plans.add_parser("expire", help="mark every waiting plan past its expiry expired (audited); for a timer")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_plan_expire)
    st = plans.add_parser("settings", help="a state's approval and sync breaker settings (the owner's)")
    st.add_argument("state")
    st.add_argument("--team-approval", choices=["required", "not-required"])
    st.add_argument("--max-removals", type=int)
    st.add_argument("--max-removal-percent", type=float)
    st.set_defaults(func=cmd_plan_settings)
    sy = sub.add_parser("sync", help="make the batch's participants equal to FILE (adds and removes)")
    _file_options(sy, "sync")
    _follow_options(sy)
    sy.set_defaults(func=cmd_sync, kind="sync")


def _file_options(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--batch", required=True, help="batch id")
    parser.add_argument("--as", dest="requester", metavar="USER_ID", help="on whose authority (direct path, required)")
    _server_option(parser)
    parser.add_argument("--id-type", choices=["user_id", "state_id"], help="for a plain list without header")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--allow-repeat", action="store_true", help="go on although this file was applied in the last 30 days"
    )
    if kind != "add":
        parser.add_argument(
            "--include-completed", action="store_true", help="also remove participants who completed the course"
        )
    if kind == "sync":
        parser.add_argument("--max-removals", type=int, help="the breaker: most removals without approval")
        parser.add_argument("--max-removal-percent", type=float, help="the breaker: most removals, % of the batch")
    parser.set_defaults(include_completed=False, max_removals=None, max_removal_percent=None)


def _server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", help="through this dashboard's API, as the token's user (default: PARTICIPANTS_SERVER)"
    )


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow the upload's results and print the summary")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--report", metavar="PATH", help="write a CSV line per row")


# ---------------------------------------------------------------------------- shared
@contextmanager
def _audited(settings: Settings) -> Iterator[None]:
    """The audit logger's records (plan made, approved …) also go to the telemetry topic, flushed at the end."""
    from enrolment.kafka.audit import install

    handler = install(settings, default_codec(), warm=True)  # connects while the plan is made or applied
    try:
        yield
    finally:
        handler.flush()


@contextmanager
def _refusals() -> Iterator[None]:
    """A plan refused (PlanRefused) or a broker away, as one sentence and its exit code."""
    from enrolment.kafka.clients import BrokerUnavailable
    from producer.plans import PlanRefused

    try:
        yield
    except PlanRefused as exc:
        raise UserError(exc.message, exc.exit_code) from None
    except BrokerUnavailable as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None


def _requester(args: argparse.Namespace, what: str) -> str:
    requester = (args.requester or "").strip()
    if not requester:
        raise UserError(
            f"{what} needs --as USER_ID (on whose authority it is made) or --server URL. Nothing was changed."
        )
    return requester


def _server(args: argparse.Namespace, settings: Settings) -> str | None:
    """The server of this run (--server, else PARTICIPANTS_SERVER); None for the direct path (without importing
    producer.remote, whose HTTP client costs ~0.4 s of start-up)."""
    given = getattr(args, "server", None)
    if not (given or settings.client_server or "").strip():
        return None
    from producer.remote import server_url

    return server_url(given, settings.client_server)


@contextmanager
def _file_rows(args: argparse.Namespace) -> Iterator[tuple[Iterable[InputRow | RefusedRow], str]]:
    """The file's rows (checked whole first, so an unusable file plans nothing) and its content hash."""
    from enrolment.files import InputError, read_participants, validate_file
    from producer.plans import file_hash

    id_type = args.id_type.upper() if args.id_type else None
    stream = rereadable(open_binary(args.file))
    try:
        start = stream.tell()
        try:
            validate_file(stream, id_type)
        except InputError as exc:
            raise UserError(f"{args.file}: {exc.message} Nothing was planned.") from None
        stream.seek(start)
        digest = file_hash(stream)
        yield read_participants(stream, id_type), digest
    finally:
        stream.close()


def _options(args: argparse.Namespace, content_hash: str, reason: str | None = None) -> Any:
    from producer.plans import PlanOptions

    return PlanOptions(
        submitted_by=operator(),
        content_hash=content_hash,
        file_name=None if args.file == "-" else Path(args.file).name,
        include_completed=args.include_completed,
        allow_repeat=args.allow_repeat,
        max_removals=args.max_removals,
        max_removal_percent=args.max_removal_percent,
        needs_approval_reason=reason,
    )


# ---------------------------------------------------------------------------- commands
def cmd_plan_make(args: argparse.Namespace, settings: Settings) -> int:
    """`plan add|remove|sync`: evaluates the file against the store now and stores a waiting plan."""
    from producer.plans import make_plan

    server = _server(args, settings)
    if server is not None:
        from producer.plan_server import make_through_server

        return make_through_server(args, server, settings)
    requester = _requester(args, f"plan {args.kind}")
    with _audited(settings), _refusals(), _file_rows(args) as (rows, digest):
        plan = make_plan(settings, db_engine(settings), args.kind, args.batch, rows, requester, _options(args, digest))
    print_plan(args, plan)
    return EXIT_OK


def plan_for_team(
    args: argparse.Namespace,
    settings: Settings,
    engine: Engine,
    rows: Iterable[InputRow | RefusedRow],
    content_hash: str,
) -> int:
    """`add`/`remove` by the implementation team where the state requires approval: a waiting plan instead."""
    from enrolment.domain.plans import ApprovalReason
    from producer.plans import make_plan

    args.max_removals = args.max_removal_percent = None
    options = _options(args, content_hash, ApprovalReason.IMPLEMENTATION_TEAM.value)
    with _audited(settings), _refusals():
        plan = make_plan(settings, engine, args.action, args.batch, rows, args.requester, options)
    print_waiting(args, Waiting(plan, TEAM_WAITS))
    return EXIT_OK


def derived_for_team(args: argparse.Namespace, settings: Settings, engine: Engine, derived: Derived) -> int | None:
    """`retry`/`undo` by the implementation team where the state requires approval: a waiting plan of the derived
    rows (kind add or remove) for a state admin, printed as `add` prints it; None when it may be published."""
    from enrolment.domain.plans import ApprovalReason
    from producer.plans import PlanOptions, make_plan

    if not team_approval_needed(engine, derived.batch_id, derived.requested_by):
        return None
    options = PlanOptions(
        submitted_by=operator(),
        include_completed=args.include_completed and derived.action == "REMOVE",
        needs_approval_reason=ApprovalReason.IMPLEMENTATION_TEAM.value,
    )
    kind = "remove" if derived.action == "REMOVE" else "add"
    with _audited(settings), _refusals():
        plan = make_plan(settings, engine, kind, derived.batch_id, derived.rows, derived.requested_by, options)
    print_waiting(args, Waiting(plan, TEAM_WAITS))
    return EXIT_OK


def team_approval_needed(engine: Engine, batch_id: str, requester: str) -> bool:
    from producer.plans import team_approval_needed as needed

    return needed(engine, batch_id, requester)


def refuse_repeat(engine: Engine, batch_id: str, content_hash: str, allow_repeat: bool) -> None:
    """The resubmission check of `add`/`remove`: a sentence and exit 2 before anything is published."""
    from producer.plans import refuse_repeat as check

    with _refusals():
        check(engine, batch_id, content_hash, allow_repeat)


def cmd_plan_show(args: argparse.Namespace, settings: Settings) -> int:
    from producer.plans import get_plan, plan_rows, show

    server = _server(args, settings)
    if server is not None:
        from producer.plan_server import show_through_server

        return show_through_server(args, server, settings)
    engine = db_engine(settings)
    with _refusals():
        if args.json:
            print(json.dumps(show(engine, args.plan_id)))
            return EXIT_OK
        print(render_plan(get_plan(engine, args.plan_id)))
        if args.rows:
            for r in plan_rows(engine, args.plan_id, args.rows.upper()):
                print(f"    line {r.line}: {r.identifier} {r.action} {r.outcome} {r.reason} — {r.message}")
    return EXIT_OK


def cmd_plan_decide(args: argparse.Namespace, settings: Settings) -> int:
    """`plan approve` (applied at once, followed with --wait) and `plan reject`."""
    from producer.plans import approve, reject

    server = _server(args, settings)
    if server is not None:
        from producer.plan_server import decide_through_server

        return decide_through_server(args, server, settings)
    decider = _requester(args, f"plan {args.decision}")
    engine = db_engine(settings)
    with _audited(settings), _refusals():
        if args.decision == "reject":
            print_plan(args, reject(settings, engine, args.plan_id, decider))
            return EXIT_OK
        return _follow(
            args,
            settings,
            lambda codec: approve(settings, engine, args.plan_id, decider, submitted_by=operator(), codec=codec),
        )


def _follow(args: argparse.Namespace, settings: Settings, apply: Callable[[Codec], ApplyResult]) -> int:
    """An applied plan's upload, followed and printed as any upload (the plan in its JSON under ``plan``)."""
    from producer.submit import publish_and_follow

    applied: list[ApplyResult] = []

    def publish(codec: Codec) -> tuple[UploadRequest, Published]:
        result = apply(codec)
        applied.append(result)
        if not args.json:
            print(render_plan(result.plan))
        return result.request, result.published

    def extra() -> dict[str, Any]:
        return {"plan": applied[0].plan.to_json(), "changed_since_plan": applied[0].changed_since_plan}

    return publish_and_follow(args, settings, publish, extra=extra)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    """`sync`: adds the missing, removes the unnamed; over the breaker it waits for approval (nothing removed)."""
    from producer.plans import apply_own, make_plan

    server = _server(args, settings)
    if server is not None:
        from producer.plan_server import sync_through_server

        return sync_through_server(args, server, settings)
    requester = _requester(args, "sync")
    engine = db_engine(settings)
    with _audited(settings), _refusals(), _file_rows(args) as (rows, digest):
        plan = make_plan(settings, engine, "sync", args.batch, rows, requester, _options(args, digest))
    if plan.record.needs_approval_reason is not None:
        print_waiting(args, Waiting(plan, SYNC_WAITS))
        return EXIT_OK
    with _audited(settings), _refusals():
        return _follow(
            args,
            settings,
            lambda codec: apply_own(settings, engine, plan.plan_id, requester, submitted_by=operator(), codec=codec),
        )


def cmd_plan_expire(args: argparse.Namespace, settings: Settings) -> int:
    """`plan expire`: the sweep a timer runs, so expiry shows (and is audited) without anyone reading a plan."""
    from producer.plans import expire_due

    with _audited(settings):
        expired = expire_due(db_engine(settings))
    if args.json:
        print(json.dumps({"expired": expired}))
    else:
        print(f"{len(expired)} plan{'' if len(expired) == 1 else 's'} expired" + "".join(f"\n  {p}" for p in expired))
    return EXIT_OK


def cmd_plan_settings(args: argparse.Namespace, settings: Settings) -> int:
    """`plan settings STATE`: prints (and with options, first changes) a state's plan settings."""
    from dataclasses import asdict, replace

    from enrolment.store import plans as store

    raw = db_engine(settings).raw_connection()
    try:
        cur = raw.cursor()
        current = store.state_settings(cur, args.state)
        changes: dict[str, Any] = {}
        if args.team_approval:
            changes["team_approval_required"] = args.team_approval == "required"
        if args.max_removals is not None:
            changes["breaker_max_removals"] = args.max_removals
        if args.max_removal_percent is not None:
            changes["breaker_percent"] = args.max_removal_percent
        if changes:
            current = replace(current, **changes)
            store.set_state_settings(cur, args.state, current)
        raw.commit()
    finally:
        raw.close()
    print(json.dumps({"state": args.state, **asdict(current)}))
    return EXIT_OK
