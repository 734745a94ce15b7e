"""Plans: planning a 10k-row file, and applying it against an upload of the same file.

    .venv/bin/python -m bench.plans [--rows 10000] [--runs 3]

Per round, on private topics with one processor running: `participants plan add FILE --json` (start → exit:
the whole file evaluated against the store and stored with its rows), then `participants plan approve PLAN
--wait` and `participants add FILE --wait` of the same file to a second fresh batch (start → summary printed),
in alternating order so a change in the machine's load falls on both. The first round is a warm-up. Reported:
medians, and the apply's median over the upload's (target: ≤ 1); planning's target is ≤ 2 s.
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
from enrolment.settings import Settings, with_stored_credentials

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


def one_round(world: World, env: dict[str, str], k: int, path: Path) -> dict[str, Any]:
    """Plan + apply on one fresh batch, an upload of the same file on another; apply first on even rounds."""
    plan_batch, upload_batch = world.make_batches(f"round{k}", 2)
    as_admin = ["--as", world.admin]
    plan_s, made = timed([PARTICIPANTS, "plan", "add", str(path), "--batch", plan_batch, *as_admin, "--json"], env)
    plan = json.loads(made.stdout)
    apply = [PARTICIPANTS, "plan", "approve", plan["plan_id"], *as_admin, "--wait", "--json"]
    upload = [PARTICIPANTS, "add", str(path), "--batch", upload_batch, *as_admin, "--wait", "--json"]
    order = [("apply", apply), ("upload", upload)] if k % 2 == 0 else [("upload", upload), ("apply", apply)]
    out: dict[str, Any] = {"plan_s": plan_s, "planned_adds": plan["counts"]["adds"]}
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
            r = one_round(world, env, k, path)
            r["warm_up"] = k == 0
            rounds.append(r)
            say(f"round {k}: plan {r['plan_s']:.2f} s, apply {r['apply_s']:.2f} s, upload {r['upload_s']:.2f} s")
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
        "apply_median_s": median("apply_s"),
        "upload_median_s": median("upload_s"),
        "apply_over_upload": median("apply_s") / median("upload_s"),
        "all_enrolled": all(r["apply_enrolled"] == r["upload_enrolled"] == rows for r in timed_rounds),
        "rounds": rounds,
    }


def render(f: dict[str, Any]) -> str:
    runs = [r for r in f["rounds"] if not r["warm_up"]]
    return "\n".join(
        [
            f"{f['rows']}-row file, CLI start → exit (plan) or → summary printed (apply, upload); medians of "
            f"{len(runs)} rounds after a warm-up",
            f"  plan add --json            {f['plan_median_s']:.2f} s   (target ≤ 2 s)  runs "
            + ", ".join(f"{r['plan_s']:.2f}" for r in runs),
            f"  plan approve --wait        {f['apply_median_s']:.2f} s   runs "
            + ", ".join(f"{r['apply_s']:.2f}" for r in runs),
            f"  add --wait (same file)     {f['upload_median_s']:.2f} s   runs "
            + ", ".join(f"{r['upload_s']:.2f}" for r in runs),
            f"  apply / upload             {f['apply_over_upload']:.3f}   (target ≤ 1)   "
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
