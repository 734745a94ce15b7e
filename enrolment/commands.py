"""What the apps' command lines share: the sub-command type, the handler type, and one command word for two apps.

Each app adds its own sub-commands (``add_commands(sub)``); the shell only assembles them. ``batches import``
(processor) and ``batches show`` (producer) live under one word, so a group is made by whichever app asks first.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import TypeAlias
from weakref import WeakKeyDictionary

from enrolment.settings import Settings

SubCommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]

_GROUPS: WeakKeyDictionary[argparse.ArgumentParser, SubCommands] = WeakKeyDictionary()


def group(sub: SubCommands, name: str, help_text: str) -> SubCommands:
    """The sub-commands under the word ``name`` (``store``, ``batches`` ...), made on first use and shared after."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help_text)
        _GROUPS[parser] = parser.add_subparsers(dest="sub", required=True)
    return _GROUPS[parser]


def operator() -> str:
    """Who runs a command against the store or Kafka directly (no signed-in user there): ``cli:LOGIN``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (e.g. a container without one)
        return "cli"
