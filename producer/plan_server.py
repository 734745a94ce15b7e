"""The plan commands in server mode (`--server`): `plan add|remove|sync`, `plan show|approve|reject` and `sync`.

The requester is the token's user (``--as`` is refused, exit 2).  The server's answers are printed by the
direct path's own functions (``producer.plan_text``, ``producer.submit``), so both paths print the same and end
with the same codes: an applied plan's upload is followed (``--wait``) and reported (``--report``) like any
upload, a plan waiting for a state admin is printed with the sentence that nothing was changed.
"""

from __future__ import annotations

import argparse
import json

from enrolment.errors import EXIT_OK
from enrolment.settings import Settings
from producer.follow import UploadStatus
from producer.plan_text import SYNC_WAITS, Waiting, print_plan, render_plan, summary_from_json
from producer.remote import Remote
from producer.server_mode import remote_for, through_server


def _file_params(args: argparse.Namespace, kind: str) -> dict[str, str]:
    params = {"batch_id": args.batch, "kind": kind}
    if args.id_type:
        params["id_type"] = args.id_type
    for flag in ("allow_repeat", "include_completed"):
        if getattr(args, flag, False):
            params[flag] = "true"
    for number in ("max_removals", "max_removal_percent"):
        if getattr(args, number, None) is not None:
            params[number] = str(getattr(args, number))
    return params


def make_through_server(args: argparse.Namespace, server: str, settings: Settings) -> int:
    """`plan add|remove|sync --server`: the server evaluates the file into a waiting plan (nothing changes)."""
    from producer.remote_plans import plan_file

    remote = remote_for(args, server, settings, nothing="planned")
    try:
        answer = plan_file(remote, args.file, _file_params(args, args.kind))
    finally:
        remote.close()
    print_plan(args, summary_from_json(answer))
    return EXIT_OK


def sync_through_server(args: argparse.Namespace, server: str, settings: Settings) -> int:
    """`sync --server`: a sync plan applied at once by the server unless it needs approval (then printed)."""
    from producer.remote_plans import plan_file

    def submit(args: argparse.Namespace, remote: Remote) -> UploadStatus | Waiting:
        params = {**_file_params(args, "sync"), "apply": "true"}
        return _applied(args, plan_file(remote, args.file, params), SYNC_WAITS)

    return through_server(args, server, settings, submit)


def decide_through_server(args: argparse.Namespace, server: str, settings: Settings) -> int:
    """`plan approve --server` (applied at once, followed with --wait) and `plan reject --server`."""
    from producer.remote_plans import decide_plan

    if args.decision == "reject":
        remote = remote_for(args, server, settings, nothing="changed")
        try:
            print_plan(args, summary_from_json(decide_plan(remote, args.plan_id, "reject")))
        finally:
            remote.close()
        return EXIT_OK

    def submit(args: argparse.Namespace, remote: Remote) -> UploadStatus | Waiting:
        return _applied(args, decide_plan(remote, args.plan_id, "approve"), SYNC_WAITS)

    return through_server(args, server, settings, submit)


def _applied(args: argparse.Namespace, answer: dict[str, object], waits: str) -> UploadStatus | Waiting:
    """The answer's applied upload as its first summary (the plan printed first, as text), or the waiting plan."""
    plan = summary_from_json(dict(answer))
    applied = answer.get("applied")
    if not isinstance(applied, dict):
        return Waiting(plan, waits)
    if not args.json:
        print(render_plan(plan))
    status = UploadStatus(
        upload_id=str(applied["upload_id"]),
        batch_id=plan.record.batch_id,
        kind=plan.record.kind,
        dry_run=False,
        published=int(applied["published"]),
        refused=list(applied["refused_rows"]),
        requested_by=applied.get("requested_by"),
        submitted_by=applied.get("submitted_by"),
    )
    status.extra = {"plan": plan.to_json(), "changed_since_plan": int(applied["changed_since_plan"])}
    return status


def show_through_server(args: argparse.Namespace, server: str, settings: Settings) -> int:
    """`plan show --server`: the plan (``--json``: the direct path's object, its upload's progress included)."""
    from producer.remote_plans import plan_rows, show_plan

    remote = remote_for(args, server, settings, nothing="changed")
    try:
        answer = show_plan(remote, args.plan_id)
        plan = summary_from_json(answer)
        if args.json:
            print(json.dumps({**plan.to_json(), "upload": answer.get("upload")}))
            return EXIT_OK
        print(render_plan(plan))
        if args.rows:
            for r in plan_rows(remote, args.plan_id, args.rows.upper()):
                what = f"{r['identifier']} {r['action']} {r['outcome']} {r['reason']}"
                print(f"    line {r['line']}: {what} — {r['message']}")
    finally:
        remote.close()
    return EXIT_OK
