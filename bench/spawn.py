"""A tiny launcher that measures one command's own peak RSS and CPU.

    python -S bench/spawn.py USAGE_FILE COMMAND [ARG ...]

Why: ``ru_maxrss`` of a child started by the bench directly also counts the bench's own memory (subprocess
starts children with vfork, and exec records the old address space's high-water mark), so every child would
look at least as big as the bench.  This launcher is small (stdlib only, run without site), forks the command
as its own child, forwards SIGTERM/SIGINT to it, waits for it with wait4 and writes
``<max RSS in KiB> <user+system CPU seconds> <pid>`` to USAGE_FILE; it exits with the command's exit code.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def main() -> int:
    usage_file, argv = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:  # the command
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    def forward(signum: int, _frame: FrameType | None) -> None:
        os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _pid, status, usage = os.wait4(pid, 0)  # retried on EINTR (PEP 475)
    with open(usage_file, "w", encoding="ascii") as f:
        f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} {pid}\n")
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
