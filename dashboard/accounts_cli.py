"""`participants accounts set-password USER_ID` and `accounts serve USER_ID --states KA,MH`.

Run by an operator against the database (the bootstrap path): the first password of an ORG_ADMIN is set here.
The password is never echoed, printed or logged.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from contextlib import closing

from enrolment.commands import SubCommands, group
from enrolment.domain.access import password_problem
from enrolment.domain.model import IMPLEMENTATION_TEAM
from enrolment.errors import EXIT_INPUT, EXIT_OK, UserError
from enrolment.settings import Settings
from enrolment.store import accounts, reference
from enrolment.store.db import engine as db_engine


def add_account_commands(sub: SubCommands) -> None:
    accounts_group = group(sub, "accounts", "dashboard sign-in: passwords and the states a team serves")
    sp = accounts_group.add_parser("set-password", help="set (or replace) a user's dashboard password")
    sp.add_argument("user_id", metavar="USER_ID", help="the user's platform user id (their sign-in name)")
    sp.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin (no prompt)"
    )
    sp.set_defaults(func=cmd_set_password)
    serve = accounts_group.add_parser("serve", help="set the states an IMPLEMENTATION_TEAM user serves")
    serve.add_argument("user_id", metavar="USER_ID")
    serve.add_argument("--states", required=True, help="comma-separated state codes, e.g. KA,MH")
    serve.set_defaults(func=cmd_serve)


def read_password(from_stdin: bool) -> str:
    """One line of stdin (without its line end), or the same password typed twice at a prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise UserError("The two passwords differ; nothing was changed.", EXIT_INPUT)
    return first


def cmd_set_password(args: argparse.Namespace, settings: Settings) -> int:
    engine = db_engine(settings)
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        if reference.user(cur, args.user_id) is None:
            raise UserError(f"No user {args.user_id} is known; import the user first (participants users import).")
    password = read_password(args.password_stdin)
    problem = password_problem(password)
    if problem:
        raise UserError(f"{problem} Nothing was changed.", EXIT_INPUT)
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        accounts.set_password(cur, args.user_id, password)
    print(f"The dashboard password of {args.user_id} is set; their earlier sessions are closed.")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    states = sorted({s.strip().upper() for s in args.states.split(",") if s.strip()})
    if not states:
        raise UserError("Name at least one state with --states, e.g. --states KA,MH.", EXIT_INPUT)
    with db_engine(settings).begin() as conn, closing(conn.connection.cursor()) as cur:
        user = reference.user(cur, args.user_id)
        if user is not None and IMPLEMENTATION_TEAM not in user.roles:
            raise UserError(
                f"User {args.user_id} does not have the {IMPLEMENTATION_TEAM} role; give it in the users file first.",
                EXIT_INPUT,
            )
        try:
            accounts.set_served_states(cur, args.user_id, states)
        except LookupError as exc:
            raise UserError(str(exc), EXIT_INPUT) from None
    print(f"{args.user_id} now serves {', '.join(states)}.")
    return EXIT_OK
