"""Measuring helpers: child processes with their own peak RSS, the processor's JSON log lines, summaries."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

PHASES = ("decode", "database", "encode", "kafka")


SPAWN = Path(__file__).resolve().with_name("spawn.py")


@dataclass
class Child:
    """A finished child process: exit code, wall time, and (when launched via spawn.py) its own peak RSS and CPU."""

    argv: list[str]
    returncode: int
    wall_s: float
    max_rss_mb: float | None = None  # None: not measured
    cpu_s: float | None = None  # user + system CPU of the command itself
    stdout: str = ""
    rss_samples_mb: list[float] = field(default_factory=list)  # VmRSS every ``sample_s`` while it ran

    def rss_profile(self) -> dict[str, float]:
        """Resident set at 10/25/50/75/100 % of the run (is memory flat or growing?)."""
        s = self.rss_samples_mb
        if not s:
            return {}
        return {f"{int(q * 100)}%": round(s[min(len(s) - 1, int(q * (len(s) - 1)))], 1) for q in QUANTILES}


QUANTILES = (0.1, 0.25, 0.5, 0.75, 1.0)


def _vm_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _only_child(pid: int) -> int | None:
    """The pid of the launcher's command (its one child), from /proc."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


class _Sampler(threading.Thread):
    """Samples the VmRSS of the launcher's command every ``every_s`` seconds."""

    def __init__(self, launcher_pid: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.launcher_pid, self.every_s = launcher_pid, every_s
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        pid: int | None = None
        while not self.done.wait(self.every_s):
            pid = pid or _only_child(self.launcher_pid)
            mb = _vm_rss_mb(pid) if pid else None
            if mb is not None:
                self.samples.append(mb)


class Launched:
    """A command started through spawn.py (so its rusage is its own), stdout/stderr to files or /dev/null."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str], stdout: IO[bytes] | int, stderr: IO[bytes] | int
    ) -> None:
        self.argv = list(argv)
        self.usage = Path(tempfile.mkstemp(prefix="bench-usage-")[1])
        self.started = time.perf_counter()
        launcher = [sys.executable, "-S", str(SPAWN), str(self.usage), *self.argv]
        self.proc = subprocess.Popen(launcher, env=env, stdout=stdout, stderr=stderr)

    def signal(self, signum: int) -> None:
        """Signals the launcher, which forwards SIGTERM/SIGINT to the command."""
        if self.proc.returncode is None:
            self.proc.send_signal(signum)

    def wait(self, timeout_s: float, samples: list[float] | None = None) -> Child:
        watchdog = threading.Timer(timeout_s, self._kill)
        watchdog.start()
        try:
            _pid, status, _usage = os.wait4(self.proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - self.started
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code  # tell Popen the child is reaped
        rss: float | None = None
        cpu: float | None = None
        try:
            fields = self.usage.read_text(encoding="ascii").split()
            rss, cpu = int(fields[0]) / 1024.0, float(fields[1])  # ru_maxrss is in KiB on Linux
        except (OSError, IndexError, ValueError):
            pass
        finally:
            self.usage.unlink(missing_ok=True)
        return Child(self.argv, code, wall, rss, cpu, "", samples or [])

    def _kill(self) -> None:
        pid = _only_child(self.proc.pid)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()


def run_child(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    stdout: Path | None = None,
    stderr: Path | None = None,
    timeout_s: float = 900.0,
    sample_s: float = 0.0,
) -> Child:
    """Runs a command to completion (stdout/stderr to files, so no pipe can fill up); killed after ``timeout_s``.

    Its peak RSS and CPU are its own (see spawn.py); with ``sample_s`` its VmRSS is also sampled while it runs.
    """
    out_f = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115 - closed below
    err_f = open(stderr, "wb") if stderr else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        child = Launched(argv, env, out_f, err_f)
        sampler = _Sampler(child.proc.pid, sample_s)
        if sample_s > 0:
            sampler.start()
        try:
            done = child.wait(timeout_s, sampler.samples)
        finally:
            sampler.done.set()
    finally:
        for f in (out_f, err_f):
            if not isinstance(f, int):
                f.close()
    done.stdout = stdout.read_text(encoding="utf-8", errors="replace") if stdout else ""
    return done


@dataclass
class Timed:
    """A child whose stdout is read as it comes: when a marker line appeared, and when the child exited."""

    child: Child
    marker_s: float | None


def run_until_marker(
    argv: Sequence[str], env: dict[str, str], marker: str, *, stderr: Path | None = None, timeout_s: float = 300.0
) -> Timed:
    """Runs a child, noting the wall time at which a stdout line starting with ``marker`` was printed."""
    err_f = open(stderr, "ab") if stderr else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE, stderr=err_f)
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        marker_s: float | None = None
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                lines.append(line)
                if marker_s is None and line.startswith(marker):
                    marker_s = time.perf_counter() - started
            code = proc.wait()
        finally:
            watchdog.cancel()
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        if not isinstance(err_f, int):
            err_f.close()
    return Timed(Child(list(argv), code, time.perf_counter() - started, stdout="".join(lines)), marker_s)


class Background:
    """A long-running command (the processor during the latency runs); stopped with SIGTERM."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_f: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.child = Launched(argv, env, self._log_f, subprocess.STDOUT)

    def wait_for_log(self, message: str, timeout_s: float = 60.0) -> float:
        """Seconds since start until a JSON log line with ``msg == message`` appeared."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(r.get("msg") == message for r in read_log(self.log)):
                return time.perf_counter() - self.child.started
            if self.child.proc.poll() is not None:
                raise RuntimeError(f"{self.child.argv[1:3]} exited with {self.child.proc.returncode}; see {self.log}")
            time.sleep(0.05)
        raise RuntimeError(f"no '{message}' in {self.log} after {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 30.0) -> Child:
        self.child.signal(signal.SIGTERM)
        try:
            return self.child.wait(timeout_s)
        finally:
            self._log_f.close()


# ------------------------------------------------------------------------------------------ processor logs
def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a processor log (other lines, e.g. a traceback, are skipped)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def log_time(rec: dict[str, Any]) -> float:
    """Epoch seconds of a log record's ``ts`` (UTC, millisecond precision)."""
    return datetime.strptime(str(rec["ts"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass
class LogSummary:
    """What the processor's log says about a run: the active span, per-batch phases and counts."""

    batches: int = 0
    commands: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    completed_uploads: int = 0
    assigned_at: float | None = None
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    busy_s: float = 0.0  # sum of each batch's "seconds"
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    batch_seconds: list[float] = field(default_factory=list)
    batch_commands: list[int] = field(default_factory=list)

    @property
    def span_s(self) -> float | None:
        """From the first "partitions assigned" to the last "batch applied"."""
        if self.assigned_at is None or self.last_batch_at is None:
            return None
        return self.last_batch_at - self.assigned_at

    def phase_shares(self) -> dict[str, float]:
        total = sum(self.phases.values())
        return {k: (v / total if total else 0.0) for k, v in self.phases.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "commands": self.commands,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "completed_uploads": self.completed_uploads,
            "span_s": self.span_s,
            "busy_s": self.busy_s,
            "phases_s": self.phases,
            "phase_shares": self.phase_shares(),
            "batch_seconds_median": statistics.median(self.batch_seconds) if self.batch_seconds else None,
            "batch_commands_median": statistics.median(self.batch_commands) if self.batch_commands else None,
            "trend": self.trend(),
        }

    def trend(self) -> dict[str, float | None]:
        """Commands per busy second in the first and the last tenth of the batches (does it slow down?)."""
        n = len(self.batch_seconds)
        if n < 10:
            return {}
        k = max(1, n // 10)

        def rate(sl: slice) -> float | None:
            return ratio(float(sum(self.batch_commands[sl])), sum(self.batch_seconds[sl]))

        return {"first_tenth_per_busy_s": rate(slice(0, k)), "last_tenth_per_busy_s": rate(slice(n - k, n))}


def summarise_log(records: list[dict[str, Any]], uploads: set[str] | None = None) -> LogSummary:
    """Aggregates "batch applied" lines (only those touching ``uploads`` when given)."""
    s = LogSummary()
    for rec in records:
        msg = rec.get("msg")
        if msg == "partitions assigned" and s.assigned_at is None:
            s.assigned_at = log_time(rec)
        if msg != "batch applied":
            continue
        if uploads is not None:
            touched = set(rec.get("uploads", [])) | set(rec.get("completed_uploads", []))
            if not touched & uploads:
                continue
        at = log_time(rec)
        s.first_batch_at = at if s.first_batch_at is None else s.first_batch_at
        s.last_batch_at = at
        s.batches += 1
        s.commands += int(rec.get("commands", 0))
        s.duplicates += int(rec.get("duplicates", 0))
        s.dead_letters += int(rec.get("dead_letters", 0))
        s.completed_uploads += len(rec.get("completed_uploads", []))
        s.busy_s += float(rec.get("seconds", 0.0))
        s.batch_seconds.append(float(rec.get("seconds", 0.0)))
        s.batch_commands.append(int(rec.get("commands", 0)))
        for k in PHASES:
            s.phases[k] += float(rec.get("phases", {}).get(k, 0.0))
    return s


# ------------------------------------------------------------------------------------------ numbers
def spread(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the samples themselves."""
    if not samples:
        return {"n": 0, "median": None, "min": None, "max": None, "samples": []}
    return {
        "n": len(samples),
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": [round(x, 4) for x in samples],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
