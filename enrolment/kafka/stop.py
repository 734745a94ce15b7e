"""The bounded stop: SIGTERM/SIGINT finish the batch in hand, and the process is gone within a bound regardless.

Why a thread woken through the signal wakeup fd: Python runs a signal handler only on the main thread, between
bytecodes. While the main thread waits inside a librdkafka call (send_offsets_to_transaction, commit_transaction,
a consumer close: up to a minute each while the broker is away) the handler does not run at all: no flag is
set, no timer armed (what a stack dump of such a processor showed). The interpreter's C-level handler does run
at once and writes the signal number to the wakeup fd; the `stop-watchdog` thread reads it there (the main
thread released the GIL while it waits in C), sets the stop event, and ends the process at the bound with a
sentence and EXIT_TIMEOUT. A kernel alarm armed by that thread (SIGALRM's default action ends the process)
is the backstop, should even the thread not get to run.

Abandoning a batch keeps exactly-once: its database transaction was not committed (rolled back when the
connection drops) or its Kafka transaction was not (aborted by the next owner's init_transactions), so the next
owner applies or re-publishes it once.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

from enrolment.errors import EXIT_TIMEOUT

log = logging.getLogger("enrolment.kafka")

STOP_SIGNALS = frozenset({int(signal.SIGTERM), int(signal.SIGINT)})
_kept: list[socket.socket] = []  # the wakeup fd's sockets live as long as the process


def install_signal_handlers(stop: threading.Event, timeout_s: float | None = None) -> None:
    """SIGTERM/SIGINT set ``stop`` (the loop finishes its batch); with ``timeout_s``, the process exits by then.

    Call it from the main thread (signal handlers and the wakeup fd can only be set there).
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if timeout_s is None:
            log.info("signal received, stopping after the current batch", extra={"signal": signum})
        stop.set()  # with a watchdog, it has already done this (and logged it) unless the signal came first here

    if timeout_s is not None:
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # the C-level handler must never block on it
        _kept.extend((reader, writer))
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        threading.Thread(target=_watchdog, args=(reader, stop, timeout_s), name="stop-watchdog", daemon=True).start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _watchdog(reader: socket.socket, stop: threading.Event, timeout_s: float) -> None:
    """Waits for a stop signal on the wakeup fd, asks the loop to stop, and ends the process at the bound."""
    signum = _next_stop_signal(reader)
    if signum is None:
        return
    log.info("signal received, stopping after the current batch", extra={"signal": signum, "timeout_s": timeout_s})
    stop.set()
    signal.alarm(math.ceil(timeout_s) + 2)  # the kernel's backstop, should this thread not get to run again
    time.sleep(timeout_s)
    _abandon(timeout_s)


def _next_stop_signal(reader: socket.socket) -> int | None:
    while True:
        try:
            data = reader.recv(64)
        except OSError:
            return None
        if not data:
            return None
        for signum in data:
            if signum in STOP_SIGNALS:
                return signum


def _abandon(timeout_s: float) -> None:
    """Ends the process now: the batch in hand is left to the next owner (nothing uncommitted is kept)."""
    log.warning(
        "the stop did not finish in time; abandoning the batch in hand (the next owner applies it)",
        extra={"timeout_s": timeout_s},
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.write(
        f"participants: the stop did not finish within {timeout_s:g} s (the broker or the database did not "
        "answer); the batch in hand was abandoned and the next processor applies it exactly once.\n"
    )
    sys.stderr.flush()
    os._exit(EXIT_TIMEOUT)
