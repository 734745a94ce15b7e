"""Plans: planning a 10k-row file, and applying it against an upload of the same file.

    .venv/bin/python -m bench.plans [--rows 10000] [--runs 3]

Per round, on private topics with one processor running, each on a fresh batch of its own:
- `participants plan add FILE --json` (start → exit: the whole file evaluated against the store and stored
  with its rows);
- the same plan made in this process (``producer.plans.make_plan`` on direct connections: the planning alone,
  without the interpreter's start-up, imports and the audit event's delivery);
- `participants add FILE --json` without --wait (start → exit: the file checked and published) — what a
  plan costs next to sending the file; the bench then waits for that upload to complete before going on;
- `participants batches show B --json` (start → exit): the CLI's fixed cost (start-up, imports, one query);
- `participants plan approve PLAN --wait` and `participants add FILE --wait` of the same file (start → summary
  printed), in alternating order so a change in the machine's load falls on both.
The first round is a warm-up. Reported: medians, planning's target (≤ 2 s), plan over add, and the apply's
median over the upload's (target: ≤ 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.measure import Background
from bench.world import PARTICIPANTS, ROOT, World
from enrolment.files import read_participants
from enrolment.settings import Settings, with_stored_credentials
from enrolment.store.db import direct
from producer.plans import PlanOptions, make_plan

RESULTS = ROOT / "bench" / "results"


def say(msg: str) -> None:
    print(f"[plans {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Seconds from start to exit of one CLI run (its output kept); a failed run stops the bench."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{argv[1:3]} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done


def wait_complete(world: World, upload_id: str, timeout_s: float = 300.0) -> None:
    """Until the processor has completed the upload (so that its work does not fall on the next figure)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with world.engine.connect() as conn:
            done = conn.execute(
                text("SELECT completed_at IS NOT NULL FROM uploads WHERE upload_id = :u"), {"u": upload_id}
            ).scalar()
        if done:
            return
        time.sleep(0.2)
    raise RuntimeError(f"upload {upload_id} did not complete in {timeout_s:.0f} s")


def in_process_plan(world: World, settings: Settings, batch: str, path: Path) -> float:
    """Seconds of make_plan alone (the file read, evaluated, stored), in this process."""
    with path.open("rb") as stream:
        started = time.perf_counter()
        make_plan(settings, direct(settings), "add", batch, read_participants(stream), world.admin, PlanOptions())
        return time.perf_counter() - started


def one_round(world: World, settings: Settings, env: dict[str, str], k: int, path: Path) -> dict[str, Any]:
    """One round's figures, each on a fresh batch; apply first on even rounds."""
    plan_batch, upload_batch, inproc_batch, add_batch = world.make_batches(f"round{k}", 4)
    as_admin = ["--as", world.admin]
    out: dict[str, Any] = {}
    out["plan_s"], made = timed(
        [PARTICIPANTS, "plan", "add", str(path), "--batch", plan_batch, *as_admin, "--json"], env
    )
    plan = json.loads(made.stdout)
    out["planned_adds"] = plan["counts"]["adds"]
    out["plan_inproc_s"] = in_process_plan(world, settings, inproc_batch, path)
    out["add_s"], sent = timed([PARTICIPANTS, "add", str(path), "--batch", add_batch, *as_admin, "--json"], env)
    wait_complete(world, json.loads(sent.stdout)["upload_id"])
    out["cli_s"], _ = timed([PARTICIPANTS, "batches", "show", plan_batch, "--json"], env)
    apply = [PARTICIPANTS, "plan", "approve", plan["plan_id"], *as_admin, "--wait", "--json"]
    upload = [PARTICIPANTS, "add", str(path), "--batch", upload_batch, *as_admin, "--wait", "--json"]
    order = [("apply", apply), ("upload", upload)] if k % 2 == 0 else [("upload", upload), ("apply", apply)]
    for name, argv in order:
        seconds, done = timed(argv, env)
        out[f"{name}_s"] = seconds
        out[f"{name}_enrolled"] = json.loads(done.stdout)["reasons"].get("ENROLLED", 0)
    return out


def measure(world: World, rows: int, runs: int, work: Path) -> list[dict[str, Any]]:
    settings = world.topics_for("plans")
    env = world.env("plans")
    path = work / "teachers.csv"
    path.write_text("state_id\n" + "".join(f"{world.state_id(j)}\n" for j in range(rows)))
    proc = Background([PARTICIPANTS, "process", "--instance-id", settings.instance_id], env, work / "processor.log")
    try:
        say(f"processor assigned after {proc.wait_for_log('partitions assigned', 120):.2f} s")
        rounds = []
        for k in range(runs + 1):
            r = one_round(world, settings, env, k, path)
            r["warm_up"] = k == 0
            rounds.append(r)
            say(
                f"round {k}: plan {r['plan_s']:.2f} s (in-process {r['plan_inproc_s']:.2f}), add {r['add_s']:.2f} s, "
                f"CLI {r['cli_s']:.2f} s, apply {r['apply_s']:.2f} s, upload {r['upload_s']:.2f} s"
            )
        return rounds
    finally:
        proc.stop()


def summarise(rows: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    timed_rounds = [r for r in rounds if not r["warm_up"]]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in timed_rounds)

    return {
        "rows": rows,
        "plan_median_s": median("plan_s"),
        "plan_inproc_median_s": median("plan_inproc_s"),
        "add_median_s": median("add_s"),
        "cli_median_s": median("cli_s"),
        "plan_over_add": median("plan_s") / median("add_s"),
        "apply_median_s": median("apply_s"),
        "upload_median_s": median("upload_s"),
        "apply_over_upload": median("apply_s") / median("upload_s"),
        "all_enrolled": all(r["apply_enrolled"] == r["upload_enrolled"] == rows for r in timed_rounds),
        "rounds": rounds,
    }


def render(f: dict[str, Any]) -> str:
    runs = [r for r in f["rounds"] if not r["warm_up"]]

    def line(label: str, key: str, note: str = "") -> str:
        return f"  {label:<34}{f[key + '_median_s']:6.2f} s  {note:<16}runs " + ", ".join(
            f"{r[key + '_s']:.2f}" for r in runs
        )

    return "\n".join(
        [
            f"{f['rows']}-row file; CLI figures are start → exit (plan, add, batches show) or → summary printed "
            f"(apply, upload); medians of {len(runs)} rounds after a warm-up",
            line("plan add --json (CLI)", "plan", "(target ≤ 2 s)"),
            line("  the same plan in-process", "plan_inproc"),
            line("add --json, no --wait (CLI)", "add"),
            line("batches show (the CLI's fixed cost)", "cli"),
            f"  plan / add                        {f['plan_over_add']:6.3f}",
            line("plan approve --wait", "apply"),
            line("add --wait (same file)", "upload"),
            f"  apply / upload                    {f['apply_over_upload']:6.3f}   (target ≤ 1)   "
            f"all enrolled {f['all_enrolled']}",
        ]
    )


def drop_plans(world: World) -> None:
    """The run's plans (their rows go with them); World.cleanup removes the rest."""
    with world.engine.begin() as conn:
        conn.execute(text("DELETE FROM plans WHERE batch_id = ANY(:b)"), {"b": world.batches})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (after one warm-up)")
    parser.add_argument("--out", type=Path, default=RESULTS / "plans.json")
    args = parser.parse_args(argv)
    base = with_stored_credentials(Settings.from_env(), "admin")
    engine = create_engine(base.database_url)
    world = World(base, engine, "p" + time.strftime("%y%m%d%H%M%S"), partitions=12)
    work = Path(tempfile.mkdtemp(prefix="bench-plans-"))
    try:
        world.make_users(args.rows)
        rounds = measure(world, args.rows, args.runs, work)
    finally:
        drop_plans(world)
        problems = world.cleanup()
        if problems:
            say(f"cleanup: {problems}")
    figures = summarise(args.rows, rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
