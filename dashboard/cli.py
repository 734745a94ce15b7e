"""The dashboard's commands: `dashboard [rebuild]` and `api-tokens create|list|revoke`.

Heavy imports (FastAPI, uvicorn) happen inside the commands so the rest of the CLI starts fast.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dashboard.accounts_cli import add_account_commands
from enrolment import logs
from enrolment.commands import SubCommands, group, operator
from enrolment.errors import EXIT_INPUT, EXIT_OK, EXIT_TIMEOUT, EXIT_UNREACHABLE, UserError
from enrolment.kafka.audit import install as install_audit
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store.db import engine as db_engine

if TYPE_CHECKING:
    from sqlalchemy import Engine


def add_commands(sub: SubCommands) -> None:
    """Adds the dashboard and API-token commands to the `participants` parser."""
    dash = sub.add_parser(
        "dashboard", help="serve the web dashboard (and run its read-model consumer in the same process)"
    )
    dash.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    dash.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dash.add_argument("--log-level", default="INFO")
    dash.add_argument(
        "--metrics-port", type=int, default=0, help="serve /healthz and Prometheus /metrics on this port (0 = off)"
    )
    dash.set_defaults(func=cmd_dashboard)
    dash_sub = dash.add_subparsers(dest="dashboard_command", metavar="COMMAND")
    rebuild = dash_sub.add_parser(
        "rebuild", help="empty the dashboard's read model and replay its topics from the start, then exit"
    )
    rebuild.add_argument("--timeout", type=float, default=1800.0, help="seconds to allow (default 1800)")
    rebuild.add_argument("--log-level", default="WARNING")
    rebuild.set_defaults(func=cmd_dashboard_rebuild)

    _add_token_commands(group(sub, "api-tokens", "API tokens: create (printed once), list, revoke"))
    add_account_commands(sub)


def _add_token_commands(tokens: SubCommands) -> None:
    tc = tokens.add_parser("create", help="create a token for a user; the secret is the last line of stdout")
    tc.add_argument("--user", required=True, help="platform user id the token acts as (its roles and scope)")
    tc.add_argument("--expires-days", default="90", metavar="N", help="days until it expires, 1 to 3650 (default 90)")
    tc.add_argument("--name", "--label", dest="name", default="", help="what the token is for")
    tc.set_defaults(func=cmd_api_token)
    tl = tokens.add_parser("list", help="list tokens (id, user, name, dates, status; never the secret)")
    tl.add_argument("--user", help="only this user's tokens")
    tl.add_argument("--json", action="store_true", help="one JSON array on stdout")
    tl.set_defaults(func=cmd_api_token_list)
    tr = tokens.add_parser("revoke", help="revoke a token by its id (tok_...); it is refused from then on")
    tr.add_argument("token_id", metavar="TOKEN_ID")
    tr.set_defaults(func=cmd_api_token_revoke)


def _require_read_model(engine: Engine) -> None:
    from dashboard.queries import read_model_ready

    with engine.connect() as conn:
        if not read_model_ready(conn):
            raise UserError("The store has no dashboard tables yet; run 'participants db upgrade' first.", EXIT_INPUT)


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.server import DashboardServer
    from enrolment.kafka.health import serve as serve_health

    logs.setup(args.log_level)
    engine = db_engine(settings)
    _require_read_model(engine)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise UserError(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}.", EXIT_INPUT) from None
    server = DashboardServer(settings, engine, host=args.host, port=args.port, log_level="warning")
    server.consumer.check_access()  # refused credentials or ACLs: one sentence now, not a silent read model
    print(
        f"Dashboard on {server.url}/courses (read model: group {settings.dashboard_group}). Ctrl-C stops it.",
        flush=True,
    )
    serve_health(
        args.metrics_port, server.consumer.health, settings.metrics_host
    )  # /healthz and /metrics on a port of their own
    server.serve_forever()
    if server.failure is not None:
        raise UserError(f"The read-model consumer gave up: {server.failure}", EXIT_UNREACHABLE)
    return EXIT_OK


def cmd_dashboard_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.consumer import NotCaughtUp, rebuild

    logs.setup(args.log_level)
    engine = db_engine(settings)
    _require_read_model(engine)
    started = time.perf_counter()
    try:
        deleted, stats = rebuild(settings, engine, default_codec(), timeout_s=args.timeout)
    except NotCaughtUp as exc:
        raise UserError(f"{exc}; run the rebuild again to continue from where it stopped.", EXIT_TIMEOUT) from None
    except ConnectionError as exc:
        raise UserError(str(exc), EXIT_UNREACHABLE) from None
    from sqlalchemy import text

    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM dash_members WHERE group_id = :g), "
                "(SELECT count(*) FROM dash_batch_counts WHERE group_id = :g), "
                "(SELECT count(*) FROM dash_progress WHERE group_id = :g), "
                "(SELECT count(*) FROM dash_uploads WHERE group_id = :g)"
            ),
            {"g": settings.dashboard_group},
        ).one()
    print(
        f"Rebuilt the read model of group {settings.dashboard_group} from {stats.messages} messages in "
        f"{time.perf_counter() - started:.1f} s (it had {deleted.get('dash_members', 0)} participants before): "
        f"{counts[0]} participants in {counts[1]} batches, {counts[2]} progress rows, {counts[3]} uploads."
        + (f" {stats.undecodable} undecodable messages were skipped." if stats.undecodable else "")
    )
    return EXIT_OK


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_api_token(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.domain.tokens import expiry_days
    from enrolment.store.tokens import issue_token

    try:
        days = expiry_days(args.expires_days)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    logs.setup("INFO")  # the audit line of the creation, on stderr
    audit = install_audit(settings, default_codec())  # and as an AUDIT event on the telemetry topic
    try:
        new = issue_token(db_engine(settings), args.user, args.name, days=days, by=operator())
    except LookupError as exc:
        raise UserError(str(exc)) from None
    finally:
        audit.flush()
    named = f" ({args.name})" if args.name else ""
    print(
        f"Token {new.token_id} for {new.user_id}{named}, expires {_when(new.expires_at)}. The secret is below, "
        "shown this once (only its hash is stored): use it as 'Authorization: Bearer SECRET'.",
        file=sys.stderr,
        flush=True,
    )
    print(new.secret)
    return EXIT_OK


def cmd_api_token_list(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import closing

    from enrolment.domain.tokens import status
    from enrolment.store import reference
    from enrolment.store.tokens import list_tokens

    with db_engine(settings).connect() as conn, closing(conn.connection.cursor()) as cur:
        if args.user and reference.user(cur, args.user) is None:
            raise UserError(f"There is no user {args.user}.")
        found = list_tokens(cur, user_id=args.user)
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([{**t.as_json(), "status": status(t.revoked_at, t.expires_at, now)} for t in found]))
        return EXIT_OK
    if not found:
        print("No tokens" + (f" for {args.user}." if args.user else "."), file=sys.stderr)
        return EXIT_OK
    row = "{:<17} {:<24} {:<20} {:<21} {:<21} {:<21} {}"
    print(row.format("TOKEN_ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATUS"))
    for t in found:
        state = status(t.revoked_at, t.expires_at, now)
        when = (t.created_at, t.expires_at, t.last_used_at)
        print(row.format(t.token_id, t.user_id, t.name or "-", *map(_when, when), state))
    return EXIT_OK


def cmd_api_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.store.tokens import revoke_token

    logs.setup("INFO")  # the audit line of the revocation, on stderr
    audit = install_audit(settings, default_codec())  # and as an AUDIT event on the telemetry topic
    try:
        info, revoked = revoke_token(db_engine(settings), args.token_id, by=operator())
    except LookupError as exc:
        raise UserError(f"{exc} ('participants api-tokens list' shows the ids).") from None
    finally:
        audit.flush()
    if revoked:
        print(f"Revoked {info.token_id} of {info.user_id}: it is refused from now on.")
    else:
        print(f"{info.token_id} of {info.user_id} was already revoked ({_when(info.revoked_at)}); nothing changed.")
    return EXIT_OK
