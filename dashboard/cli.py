"""The dashboard's commands: `dashboard [rebuild]` and `api-tokens create`.

Heavy imports (FastAPI, uvicorn) happen inside the commands so the rest of the CLI starts fast.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import TYPE_CHECKING

from dashboard.accounts_cli import add_account_commands
from enrolment import logs
from enrolment.commands import SubCommands, group
from enrolment.errors import EXIT_INPUT, EXIT_OK, EXIT_TIMEOUT, EXIT_UNREACHABLE, UserError
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
    dash.set_defaults(func=cmd_dashboard)
    dash_sub = dash.add_subparsers(dest="dashboard_command", metavar="COMMAND")
    rebuild = dash_sub.add_parser(
        "rebuild", help="empty the dashboard's read model and replay its topics from the start, then exit"
    )
    rebuild.add_argument("--timeout", type=float, default=1800.0, help="seconds to allow (default 1800)")
    rebuild.add_argument("--log-level", default="WARNING")
    rebuild.set_defaults(func=cmd_dashboard_rebuild)

    tc = group(sub, "api-tokens", "bearer tokens for the Sunbird-compatible API").add_parser(
        "create", help="create a token for an admin user and print it"
    )
    tc.add_argument("--user", required=True, help="platform user id of the admin")
    tc.add_argument("--label", help="what the token is for")
    tc.set_defaults(func=cmd_api_token)
    add_account_commands(sub)


def _require_read_model(engine: Engine) -> None:
    from dashboard.queries import read_model_ready

    with engine.connect() as conn:
        if not read_model_ready(conn):
            raise UserError("The store has no dashboard tables yet; run 'participants db upgrade' first.", EXIT_INPUT)


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.server import DashboardServer

    logs.setup(args.log_level)
    engine = db_engine(settings)
    _require_read_model(engine)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise UserError(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}.", EXIT_INPUT) from None
    server = DashboardServer(settings, engine, host=args.host, port=args.port, log_level="warning")
    print(
        f"Dashboard on {server.url}/courses (read model: group {settings.dashboard_group}). Ctrl-C stops it.",
        flush=True,
    )
    server.serve_forever()
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


def cmd_api_token(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.store.tokens import create_token

    try:
        token = create_token(db_engine(settings), args.user, args.label or "")
    except LookupError as exc:
        raise UserError(str(exc)) from None
    print(token)
    print(f"(a bearer token for {args.user}; only its hash is stored, keep it now)", file=sys.stderr)
    return EXIT_OK
