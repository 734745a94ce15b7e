"""A soak: mixed uploads at a steady rate for N minutes while a chaos loop restarts a processor, the database or
the broker; then the store, changelog, results and events are checked against each other.

    python -m bench.soak --minutes 30 [--processors 3] [--chaos-every 120] [--report bench/RESULTS-…-soak.txt]

Everything runs on a private world (bench.world: topics, groups, a state, users, batches), on this worktree's
stack only: the broker whose pid is in .stack/kafka.pid (SIGKILLed, then `scripts/stack kafka-start`) and the
PostgreSQL cluster STACK_PG_CLUSTER, and that one only if its port is the database URL's (`pg_ctlcluster
restart`). Uploads cycle through add (a new slice of users), a repeat of an earlier add (every row
ALREADY_ENROLLED), a dry run and a remove of an earlier slice. Progress is sampled once a second from the
ledger; the report gives uploads submitted/completed, rows per second held (median per minute), the longest
stall (outstanding work and no row applied), each fault with its recovery time (injection to the next applied
row), and the verdicts of `participants store verify` and of the results/events cross-checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Engine, create_engine, text

from bench.world import PARTICIPANTS, ROOT, World
from enrolment.files import InputRow, RefusedRow
from enrolment.kafka.clients import BrokerUnavailable, read_all
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings, with_stored_credentials
from producer.publish import UploadRequest, publish_upload

SCENARIO = "soak"
KAFKA_PID = ROOT / ".stack" / "kafka.pid"
KINDS = ("add", "repeat", "add", "dry-run", "remove")  # two adds per remove: the batches fill up


def say(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ the stack
def pg_cluster(database_url: str) -> tuple[str, str] | None:
    """(version, name) of this worktree's cluster serving ``database_url``; None when it is not ours to restart."""
    name = os.environ.get("STACK_PG_CLUSTER", "main")
    port = str(urlsplit(database_url.replace("postgresql+psycopg2", "postgresql")).port or 5432)
    listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        f = line.split()
        if len(f) >= 3 and f[1] == name and f[2] == port:
            return f[0], name
    return None


def restart_database(cluster: tuple[str, str]) -> None:
    subprocess.run(["pg_ctlcluster", cluster[0], cluster[1], "restart", "-m", "fast"], check=True, capture_output=True)


def restart_broker() -> None:
    """SIGKILL this worktree's broker, then start it again with the stack (its data kept)."""
    pid = int(KAFKA_PID.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.1)
    subprocess.run([str(ROOT / "scripts" / "stack"), "kafka-start"], check=True, capture_output=True, cwd=ROOT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


# ------------------------------------------------------------------------------------------------ processors
@dataclass
class Processors:
    """The processor instances, each restartable; their logs in one folder."""

    env: dict[str, str]
    logs: Path
    count: int
    token: str
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, i: int) -> None:
        out = (self.logs / f"processor-{i}.log").open("ab")
        self.procs[i] = subprocess.Popen(
            [PARTICIPANTS, "process", "--instance-id", f"soak-{self.token}-{i}"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def start_all(self) -> None:
        for i in range(self.count):
            self.start(i)

    def restart(self, i: int) -> None:
        """SIGKILL (a crash: the harshest stop) and start again with the same instance id."""
        proc = self.procs[i]
        proc.kill()
        proc.wait(30)
        self.start(i)

    def exited(self) -> dict[int, int]:
        return {i: p.returncode for i, p in self.procs.items() if p.poll() is not None}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------------------------------------ progress
@dataclass
class Progress:
    """Samples of (time, rows applied, uploads completed), taken once a second from the store."""

    engine: Engine
    group: str
    batches: list[str]
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    submitted: dict[str, float] = field(default_factory=dict)  # upload id -> when published
    completed: dict[str, float] = field(default_factory=dict)

    def sample(self) -> None:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT count(*) FROM command_ledger WHERE group_id = :g"), {"g": self.group}
                ).scalar_one()
                done = conn.execute(
                    text("SELECT upload_id FROM uploads WHERE batch_id = ANY(:b) AND completed_at IS NOT NULL"),
                    {"b": self.batches},
                ).scalars()
                now = time.monotonic()
                for u in done:
                    self.completed.setdefault(u, now)
        except Exception:  # noqa: BLE001 - the database is one of the faults: no sample, no progress
            self.engine.dispose()
            return
        self.samples.append((now, int(rows), len(self.completed)))

    def rows(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def outstanding(self) -> int:
        return len(set(self.submitted.copy()) - set(self.completed))


# ------------------------------------------------------------------------------------------------ uploads
@dataclass
class Uploads:
    """Mixed uploads of ``size`` rows at a steady rate: add, repeat, dry run, remove, in turn."""

    settings: Settings
    world: World
    progress: Progress
    size: int
    batches: list[str]
    added: list[tuple[str, int]] = field(default_factory=list)  # (batch, first user) of adds not yet removed
    next_user: int = 0
    turn: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    publish_failures: int = 0

    def one(self) -> None:
        kind = KINDS[self.turn % len(KINDS)]
        if kind in ("repeat", "remove") and not self.added:
            kind = "add"
        batch, first = self._slice(kind)
        request = UploadRequest(
            batch_id=batch,
            action="REMOVE" if kind == "remove" else "ADD",
            requested_by=self.world.admin,
            kind="remove" if kind == "remove" else "add",
            dry_run=kind == "dry-run",
        )
        items: list[InputRow | RefusedRow] = [
            InputRow(2 + i, self.world.state_id(first + i), "STATE_ID")  # type: ignore[arg-type]
            for i in range(self.size)
        ]
        try:
            publish_upload(self.settings, default_codec(), request, items, keep_rows=False)
        except BrokerUnavailable as exc:
            self.publish_failures += 1
            say(f"publish failed (tried again next tick): {exc}")
            return
        self.progress.submitted[request.upload_id] = time.monotonic()
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.turn += 1
        if kind == "add":
            self.added.append((batch, first))
        elif kind == "remove":
            self.added.remove((batch, first))

    def _slice(self, kind: str) -> tuple[str, int]:
        if kind == "add" or kind == "dry-run":
            first = self.next_user
            if kind == "add":
                self.next_user += self.size
            return self.batches[(first // self.size) % len(self.batches)], first
        if kind == "repeat":
            return self.added[-1]
        return self.added[0]  # remove the oldest slice


# ------------------------------------------------------------------------------------------------ chaos
@dataclass
class Fault:
    what: str
    at: float
    repaired: float = 0.0
    recovered: float | None = None  # the first applied row after the repair


@dataclass
class Chaos:
    processors: Processors
    cluster: tuple[str, str] | None
    progress: Progress
    faults: list[Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(11))

    def inject(self) -> None:
        choices = ["processor", "broker"] + (["database"] if self.cluster else [])
        what = self.rng.choice(choices)
        fault = Fault(what, time.monotonic())
        if what == "processor":
            i = self.rng.randrange(self.processors.count)
            fault.what = f"processor {i} SIGKILLed and restarted"
            self.processors.restart(i)
        elif what == "broker":
            fault.what = "broker SIGKILLed and restarted"
            restart_broker()
        else:
            assert self.cluster is not None
            fault.what = "PostgreSQL restarted (fast)"
            restart_database(self.cluster)
        fault.repaired = time.monotonic()
        self.faults.append(fault)
        say(f"fault: {fault.what} (repaired after {fault.repaired - fault.at:.1f} s)")

    def note_recoveries(self) -> None:
        """A fault has recovered once the ledger grows after its repair (with work outstanding)."""
        for f in self.faults:
            if f.recovered is not None:
                continue
            after = [s for s in self.progress.samples if s[0] >= f.repaired]
            before = [s for s in self.progress.samples if s[0] < f.at]
            base = before[-1][1] if before else 0
            grown = next((s for s in after if s[1] > base), None)
            if grown is not None:
                f.recovered = grown[0]


# ------------------------------------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> dict[str, object]:
    base = with_stored_credentials(Settings.from_env(), "admin")
    engine = create_engine(base.database_url, pool_pre_ping=True)
    world = World(base, engine, f"{int(time.time())}", partitions=12)
    logs = Path(args.logs or f"/tmp/soak-{world.token}")
    logs.mkdir(parents=True, exist_ok=True)
    say(f"world {world.token}, logs in {logs}")
    world.make_users(args.users)
    batches = world.make_batches(SCENARIO, args.batches)
    settings = world.topics_for(SCENARIO)
    env = world.env(SCENARIO)
    env.pop("DATABASE_URL", None)  # the processors log in as their own role (enrolment.credentials)
    env["PROCESSOR_MAX_BATCH"] = str(args.max_batch)
    processors = Processors(env, logs, args.processors, world.token)
    progress = Progress(engine, settings.consumer_group, batches)
    cluster = pg_cluster(base.database_url)
    chaos = Chaos(processors, cluster, progress)
    producer_settings = with_stored_credentials(settings, "producer")
    uploads = Uploads(producer_settings, world, progress, args.size, batches)
    try:
        processors.start_all()
        result = _drive(args, uploads, progress, chaos)
        result["verify"] = _verify(env, batches, settings, engine)
        result["exited"] = processors.exited()
        return result
    finally:
        processors.stop()
        if not args.keep:
            problems = world.cleanup()
            if problems:
                say(f"cleanup problems: {problems}")
        engine.dispose()


def _drive(args: argparse.Namespace, uploads: Uploads, progress: Progress, chaos: Chaos) -> dict[str, object]:
    """Uploads and chaos in threads of their own for the run's length; sampling here; then the outstanding work."""
    started = time.monotonic()
    end = started + args.minutes * 60
    threads = [
        threading.Thread(target=_every, args=(60.0 / args.rate, 0.0, end, uploads.one), name="uploads", daemon=True),
        threading.Thread(target=_every, args=(args.chaos_every, args.chaos_every, end, chaos.inject), daemon=True),
    ]
    for t in threads:
        t.start()
    while time.monotonic() < end or any(t.is_alive() for t in threads):
        progress.sample()
        chaos.note_recoveries()
        time.sleep(1)
    say(f"uploads stopped; waiting for {progress.outstanding()} outstanding")
    deadline = time.monotonic() + args.drain_s
    while progress.outstanding() and time.monotonic() < deadline:
        progress.sample()
        chaos.note_recoveries()
        time.sleep(1)
    return _figures(args, uploads, progress, chaos, started)


def _every(period_s: float, first_s: float, end: float, action: Callable[[], None]) -> None:
    """Calls ``action`` every ``period_s`` (a steady rate: a slow call does not shift the later ones) until ``end``."""
    due = time.monotonic() + first_s
    while True:
        time.sleep(max(0.0, due - time.monotonic()))
        if time.monotonic() >= end:
            return
        action()
        due += period_s


def _figures(
    args: argparse.Namespace, uploads: Uploads, progress: Progress, chaos: Chaos, started: float
) -> dict[str, object]:
    samples = progress.samples
    per_minute = []
    for m in range(int(args.minutes)):
        window = [s for s in samples if started + 60 * m <= s[0] < started + 60 * (m + 1)]
        if len(window) >= 2:
            per_minute.append((window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]))
    return {
        "minutes": args.minutes,
        "processors": args.processors,
        "upload_rows": args.size,
        "rate_per_minute": args.rate,
        "submitted": len(progress.submitted),
        "completed": len(set(progress.completed) & set(progress.submitted)),
        "kinds": uploads.kinds,
        "publish_failures": uploads.publish_failures,
        "rows_applied": progress.rows(),
        "rows_per_s_median_per_minute": statistics.median(per_minute) if per_minute else 0.0,
        "rows_per_s_min_minute": min(per_minute) if per_minute else 0.0,
        "longest_stall_s": _longest_stall(progress),
        "faults": [
            {
                "what": f.what,
                "at_s": round(f.at - started, 1),
                "repair_s": round(f.repaired - f.at, 1),
                "recovered_s": None if f.recovered is None else round(f.recovered - f.at, 1),
            }
            for f in chaos.faults
        ],
        "completion_s_median": statistics.median(
            [progress.completed[u] - t for u, t in progress.submitted.items() if u in progress.completed] or [0.0]
        ),
    }


def _longest_stall(progress: Progress) -> float:
    """The longest interval with uploads outstanding during which no row was applied (missing samples count)."""
    longest, since, last_rows = 0.0, None, -1
    times = progress.submitted.copy()
    for t, rows, _done in progress.samples:
        waiting = any(s <= t and progress.completed.get(u, float("inf")) > t for u, s in times.items())
        if rows > last_rows or not waiting:
            since = t if waiting else None
        elif since is not None:
            longest = max(longest, t - since)
        last_rows = rows
    return round(longest, 1)


def _verify(env: dict[str, str], batches: list[str], settings: Settings, engine: Engine) -> dict[str, object]:
    """`participants store verify` on the soak's batches, and the results and events against the ledger."""
    args = [PARTICIPANTS, "store", "verify", "--json"] + [a for b in batches for a in ("--batch", b)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    verdict: dict[str, object] = {"store_verify_exit": done.returncode}
    try:
        verdict["store_verify"] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        verdict["store_verify_said"] = (done.stdout + done.stderr)[-500:]
    codec = default_codec()
    results = [codec.decode(m.value())[1]["command_id"] for m in read_all(settings, settings.topics.results)]
    events = [codec.decode(m.value())[1] for m in read_all(settings, settings.topics.enrollment_events)]
    with engine.connect() as conn:
        ledger, changed = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'APPLIED' AND NOT dry_run) "
                "FROM command_ledger WHERE group_id = :g"
            ),
            {"g": settings.consumer_group},
        ).one()
    verdict.update(
        ledger_rows=int(ledger),
        results=len(results),
        distinct_results=len(set(results)),
        applied_changes=int(changed),
        enrolment_events=len(events),
        results_agree=len(results) == len(set(results)) == int(ledger),
        events_agree=len(events) == int(changed),
    )
    return verdict


# ------------------------------------------------------------------------------------------------ the report
def render(r: dict[str, object]) -> str:
    v = r["verify"]
    assert isinstance(v, dict)
    sv = v.get("store_verify", {})
    lines = [
        f"Soak, {time.strftime('%Y-%m-%d %H:%M')}: {r['minutes']} minutes, {r['processors']} processors, "
        f"one upload of {r['upload_rows']} rows every {60 / float(str(r['rate_per_minute'])):.0f} s "
        f"(add, repeat, add, dry run, remove in turn), a fault every 2 minutes; this worktree's stack (one broker, "
        "its PostgreSQL cluster), a shared 2-core machine.",
        "",
        f"uploads submitted {r['submitted']}, completed {r['completed']} (by kind: {r['kinds']}; "
        f"{r['publish_failures']} publishes refused while the broker was down, tried again)",
        f"rows applied {r['rows_applied']} (offered {_offered(r):.0f}/s); rows per second held: median per minute "
        f"{float(str(r['rows_per_s_median_per_minute'])):.1f}, slowest minute "
        f"{float(str(r['rows_per_s_min_minute'])):.1f}",
        f"median time from publish to completed {float(str(r['completion_s_median'])):.1f} s",
        f"longest stall (uploads outstanding, no row applied): {r['longest_stall_s']} s",
        "",
        "faults (injection; the restart command returned; the next row applied, counted from the injection):",
    ]
    for f in r["faults"]:  # type: ignore[attr-defined]
        rec = "not recovered" if f["recovered_s"] is None else f"recovered after {f['recovered_s']} s"
        lines.append(f"  t+{f['at_s']:>7} s  {f['what']:<40} restarted in {f['repair_s']} s, {rec}")
    ok = isinstance(sv, dict) and sv.get("ok")
    lines += [
        "",
        f"store verify (store vs changelog, {sv.get('compared', '?') if isinstance(sv, dict) else '?'} "
        f"enrolments): {'no differences' if ok else 'DIFFERENCES: ' + json.dumps(sv or v)[:400]}",
        f"results: {v['results']} ({v['distinct_results']} distinct) against {v['ledger_rows']} ledger rows: "
        f"{'agree' if v['results_agree'] else 'DISAGREE'}",
        f"enrolment events: {v['enrolment_events']} against {v['applied_changes']} applied changes: "
        f"{'agree' if v['events_agree'] else 'DISAGREE'}",
        f"processors that exited during the run: {r['exited'] or 'none'}",
    ]
    return "\n".join(lines) + "\n"


def _offered(r: dict[str, object]) -> float:
    return float(str(r["rate_per_minute"])) * int(str(r["upload_rows"])) / 60


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--processors", type=int, default=3)
    p.add_argument("--chaos-every", type=float, default=120.0, help="seconds between faults")
    p.add_argument("--rate", type=float, default=6.0, help="uploads per minute")
    p.add_argument("--size", type=int, default=1000, help="rows per upload")
    p.add_argument("--users", type=int, default=20000)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=500)
    p.add_argument("--drain-s", type=float, default=300.0, help="how long to wait for outstanding work at the end")
    p.add_argument("--report", default="")
    p.add_argument("--logs", default="")
    p.add_argument("--keep", action="store_true", help="keep the world (rows, topics) for inspection")
    args = p.parse_args(argv)
    result = run(args)
    report = render(result)
    print(report)
    if args.report:
        Path(args.report).write_text(report)
        Path(args.report).with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    v = result["verify"]
    good = isinstance(v, dict) and v.get("results_agree") and v.get("events_agree") and v.get("store_verify_exit") == 0
    return 0 if good and result["submitted"] == result["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
