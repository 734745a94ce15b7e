"""`participants`: the one command line, and the composition point that wires settings, store and Kafka.

The shell only assembles the apps' sub-commands (each app's ``cli.add_commands``) and turns every failure
into a sentence and an exit code (:mod:`enrolment.errors`), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg2

from dashboard import cli as dashboard_cli
from enrolment.commands import SubCommands
from enrolment.credentials import DEFAULT_COMPONENT
from enrolment.domain.text import ControlCharacter
from enrolment.errors import EXIT_INPUT, EXIT_OK, EXIT_UNREACHABLE, UserError
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.settings import Settings
from enrolment.store.db import db_unreachable, redact_urls
from processor import cli as processor_cli
from producer import cli as producer_cli

# Whose credentials each sub-command runs with (enrolment.credentials; README "Principals and roles").
COMPONENT_OF_COMMAND = {
    "process": "processor",
    "replay": "processor",
    "store": "processor",
    "dead-letters": "processor",
    "dashboard": "dashboard",
    "add": "producer",
    "remove": "producer",
    "retry": "producer",
    "undo": "producer",
    "status": "producer",
    "login": "producer",
    "batches show": "producer",
    "progress": "progress",
    "plan": "producer",
    "plan settings": DEFAULT_COMPONENT,  # the owner's: the states' settings
    "sync": "producer",
}


def component_of(args: argparse.Namespace) -> str:
    """The component a parsed command line runs as: imports, schema and accounts are the owner's."""
    words = f"{args.command} {getattr(args, 'sub', '') or ''}".strip()
    return COMPONENT_OF_COMMAND.get(words) or COMPONENT_OF_COMMAND.get(args.command) or DEFAULT_COMPONENT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="participants", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the store to the latest schema").set_defaults(func=cmd_db_upgrade)
    processor_cli.add_commands(sub)
    producer_cli.add_commands(sub)
    dashboard_cli.add_commands(sub)
    _add_demo_data(sub)
    return p


def _add_demo_data(sub: SubCommands) -> None:
    dd = sub.add_parser("demo-data", help="write the demo CSVs (users, batches, a 10k upload, progress)")
    dd.add_argument("--out", default="demo-data")
    dd.add_argument("--teachers-per-state", type=int, default=None, help="default: KA 10,500 and MH 1,500")
    dd.add_argument("--upload-rows", type=int, default=10_000, help="rows of the upload file (default: 10,000)")
    dd.set_defaults(func=cmd_demo_data)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from enrolment.store import migrate

    migrate.upgrade(settings.database_url)
    print("database is at the latest schema")
    return EXIT_OK


def cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    from participants.demo_data import write_demo_data

    files = write_demo_data(Path(args.out), args.teachers_per_state, upload_rows=args.upload_rows)
    for name, path in vars(files).items():
        print(f"{name}: {path}")
    return EXIT_OK


class _NeverRaised(Exception):
    """Stands for SQLAlchemy's OperationalError in a command that never imported SQLAlchemy."""


def _sqlalchemy_operational_error() -> type[Exception]:
    """SQLAlchemy's OperationalError once SQLAlchemy is loaded; its import (~0.5 s) is left to the commands using it."""
    loaded = sys.modules.get("sqlalchemy.exc")
    found: type[Exception] = loaded.OperationalError if loaded is not None else _NeverRaised
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(component_of(args))
    try:
        code: int = args.func(args, settings)
        return code
    except UserError as exc:
        print(f"participants: {exc}", file=sys.stderr)
        return exc.code
    except ControlCharacter as exc:  # an argument (a batch id, a user id) holds a control character
        print(f"participants: {exc.reason}: {exc.sentence} Nothing was published.", file=sys.stderr)
        return EXIT_INPUT
    except BrokerUnavailable as exc:  # unreachable, or refused credentials / ACLs (clients.AccessDenied)
        print(f"participants: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except _sqlalchemy_operational_error() as exc:
        print(f"participants: {db_unreachable(settings, getattr(exc, 'orig', None) or exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except psycopg2.OperationalError as exc:  # Engine.raw_connection() raises the driver's error unwrapped
        print(f"participants: {db_unreachable(settings, exc)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("participants: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: a sentence, not a traceback
        logging.getLogger("participants").debug("unexpected error", exc_info=True)
        if args.command == "process":
            logging.getLogger("processor").exception("processor stopped on an unexpected error")
        print(f"participants: unexpected error ({type(exc).__name__}): {redact_urls(str(exc))}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
