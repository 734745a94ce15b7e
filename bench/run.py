"""The benchmark suite: every scenario next to a baseline measured in the same run, as medians and ratios.

    .venv/bin/python -m bench.run [--quick] [--only SCENARIO ...] [--profile] [--keep]

Runs against the live stack (scripts/stack up) with its own topics (``bench<ts>.<scenario>.*``, 12 command
partitions), consumer groups, state, users and batches, and removes all of them at the end (unless --keep).

1. latency     `participants add --batch B --as ADMIN FILE --wait` of a 10k-row CSV by state id, a processor
               already running: subprocess wall time until the summary is printed.  Each run a fresh batch of
               fresh users (all ENROLLED), after one warm-up run; then the first file again (ALREADY_ENROLLED).
               Baseline: the same command with a 1-row file (the fixed cost: start-up, connections, polls).
2. throughput  commands published up front (4k per batch), then `participants process --until-idle`: the span
               from the first "partitions assigned" to the last "batch applied" log line, and the sum of each
               batch's phases.  Baseline: the naive processor (bench/naive.py) on its own sample; and the
               database ceiling: enrolment.store.step.apply_commands alone on pre-built commands.
3. producer    `participants add ... FILE` (no --wait) of a large CSV: wall time to acknowledged publish and
               peak RSS.  Baseline: bench/obvious_producer.py (csv.DictReader + fastavro.schemaless_writer + a
               plain Producer) on the same file, also a child process; the reader alone is shown as the floor.
4. memory      peak RSS of `participants process --until-idle` over the throughput run, and over 1M commands
               in the full run.  Baseline: the same command with nothing to do (the fixed footprint).

No timed assertions: the output is a table on stdout and bench/results/latest.json (the processor logs and CLI
output of the run in bench/results/latest-logs/), each target marked met or missed with the ratio value/target.
--quick scales the volumes down (about 1–2 minutes); the full run takes 6–10 minutes on 2 cores.
Peak RSS of a child is its own (bench/spawn.py), not inflated by the bench process.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine

from bench import measure
from bench.measure import Background, ratio, run_child, run_until_marker, spread, summarise_log
from bench.naive import run_naive
from bench.report import Target, render, targets_from
from bench.world import PARTICIPANTS, PYTHON, ROOT, World, chunks
from enrolment.domain.model import Action, Command, IdType
from enrolment.files import InputRow, RefusedRow, read_participants
from enrolment.messages.codec import Codec, default_codec
from enrolment.settings import Settings, with_stored_credentials
from enrolment.store.step import Positioned, apply_commands
from producer.publish import UploadRequest, publish_upload

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("latency", "throughput", "naive", "ceiling", "producer", "memory")


@dataclass(frozen=True)
class Volumes:
    latency_rows: int = 10_000
    latency_runs: int = 5
    batch_size: int = 4_000  # commands per enrolment batch (throughput, naive, memory, ceiling)
    throughput_commands: int = 200_000
    naive_commands: int = 5_000
    ceiling_commands: int = 50_000
    ceiling_chunk: int = 5_000  # commands per transaction, like the processor's max batch
    producer_rows: int = 1_000_000
    producer_runs: int = 1
    memory_commands: int = 1_000_000  # 0: the throughput run's RSS stands in
    profile_commands: int = 50_000


FULL = Volumes()
QUICK = Volumes(
    latency_runs=2,
    throughput_commands=20_000,
    naive_commands=1_000,
    ceiling_commands=20_000,
    producer_rows=100_000,
    memory_commands=0,
    profile_commands=20_000,
)


def peak(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def mb(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} MB"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Suite:
    def __init__(self, vol: Volumes, world: World, codec: Codec, work: Path) -> None:
        self.vol = vol
        self.world = world
        self.codec = codec
        self.work = work
        self.results: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------- helpers
    def publish_batches(self, settings: Settings, batch_ids: list[str], total: int, first_user: int) -> dict[str, Any]:
        """Publishes ``total`` ADD commands by state id over ``batch_ids`` (batch_size each) with the real
        producer code in-process; returns the upload ids and the publish rate (for information)."""
        w = self.world
        started = time.perf_counter()
        uploads: list[str] = []
        for i, (start, n) in enumerate(chunks(total, self.vol.batch_size)):
            rows: list[InputRow | RefusedRow] = [
                InputRow(2 + j, w.state_id(first_user + start + j), "STATE_ID") for j in range(n)
            ]
            request = UploadRequest(batch_id=batch_ids[i], action="ADD", requested_by=w.admin, kind="add")
            uploads.append(publish_upload(settings, self.codec, request, rows, keep_rows=False).upload_id)
        seconds = time.perf_counter() - started
        return {"uploads": uploads, "publish_s": seconds, "publish_per_s": total / seconds}

    def ledger_outcomes(self, group: str) -> dict[str, int]:
        raw = self.world.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT reason, count(*) FROM command_ledger WHERE group_id = %s GROUP BY reason", (group,))
            out = {str(r): int(n) for r, n in cur.fetchall()}
            raw.commit()
            return out
        finally:
            raw.close()

    def write_csv(self, name: str, ids: list[str]) -> Path:
        path = self.work / name
        path.write_text("state_id\n" + "\n".join(ids) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------------------------- 1. latency
    def latency(self) -> dict[str, Any]:
        v, w = self.vol, self.world
        settings = w.topics_for("latency")
        env = w.env("latency")
        batches = w.make_batches("latency", 1 + v.latency_runs)
        one_batch = w.make_batches("latency-one", 1)[0]
        files = [
            self.write_csv(f"latency-{k}.csv", [w.state_id(k * v.latency_rows + j) for j in range(v.latency_rows)])
            for k in range(1 + v.latency_runs)
        ]
        log = self.work / "latency-processor.log"
        proc = Background([PARTICIPANTS, "process", "--instance-id", settings.instance_id], env, log)
        ready_s = proc.wait_for_log("partitions assigned")
        say(f"latency: processor assigned after {ready_s:.2f} s")
        runs: list[dict[str, Any]] = []

        def upload(batch: str, path: Path, kind: str, timeout_s: int = 120) -> dict[str, Any]:
            argv = [PARTICIPANTS, "add", "--batch", batch, "--as", w.admin, str(path), "--wait"]
            argv += ["--timeout", str(timeout_s)]
            t = run_until_marker(argv, env, "  REJECTED", stderr=self.work / "latency-cli.err")
            m = re.search(r"Upload (\S+): ", t.child.stdout)
            reasons = {r: int(n) for r, n in re.findall(r"\((\w+)\) (\d+)", t.child.stdout)}
            run = {
                "kind": kind,
                "batch": batch,
                "upload_id": m.group(1) if m else None,
                "summary_s": t.marker_s,
                "exit_s": t.child.wall_s,
                "exit_code": t.child.returncode,
                "reasons": reasons,
                "complete": t.child.returncode in (0, 3) and ", complete" in t.child.stdout,
            }
            runs.append(run)
            say(
                f"latency: {kind:<16} {t.marker_s or float('nan'):6.2f} s to summary, "
                f"exit {t.child.returncode}, {reasons}"
            )
            return run

        one_ids = [w.state_id(v.latency_rows * (1 + v.latency_runs) + k) for k in range(1 + v.latency_runs)]
        try:
            upload(batches[0], files[0], "warm-up")
            for k in range(1, 1 + v.latency_runs):
                upload(one_batch, self.write_csv(f"one-{k}.csv", [one_ids[k]]), "one-row", timeout_s=30)
                upload(batches[k], files[k], "fresh")
            upload(batches[1], files[1], "already-enrolled")
        finally:
            stopped = proc.stop()
        records = measure.read_log(log)
        for run in runs:
            if run["upload_id"]:
                s = summarise_log(records, {run["upload_id"]})
                run["processor_busy_s"] = s.busy_s
                run["processor_batches"] = s.batches
        # a run that hit --timeout (exit 4) is counted, not timed: its "summary" is the timeout's
        incomplete = [r for r in runs if not r["complete"]]
        fresh = [r for r in runs if r["kind"] == "fresh" and r["complete"]]
        one = [r for r in runs if r["kind"] == "one-row" and r["complete"]]
        again = [r for r in runs if r["kind"] == "already-enrolled" and r["complete"]]
        fresh_ok = bool(fresh) and all(r["reasons"].get("ENROLLED") == v.latency_rows for r in fresh)
        again_ok = bool(again) and all(r["reasons"].get("ALREADY_ENROLLED") == v.latency_rows for r in again)
        summary = spread([r["summary_s"] for r in fresh if r["summary_s"] is not None])
        baseline = spread([r["summary_s"] for r in one if r["summary_s"] is not None])
        return {
            "rows": v.latency_rows,
            "runs": runs,
            "fresh_s": summary,
            "fresh_exit_s": spread([r["exit_s"] for r in fresh]),
            "fresh_processor_busy_s": spread([r.get("processor_busy_s", 0.0) for r in fresh]),
            "already_enrolled_s": again[0]["summary_s"] if again else None,
            "one_row_s": baseline,
            "ratio_to_one_row": ratio(summary["median"], baseline["median"]),
            "marginal_10k_s": (summary["median"] - baseline["median"])
            if summary["median"] is not None and baseline["median"] is not None
            else None,
            "all_enrolled": fresh_ok,
            "incomplete_runs": [{k: r[k] for k in ("kind", "upload_id", "exit_code", "exit_s")} for r in incomplete],
            "all_already_enrolled": again_ok,
            "processor_ready_s": ready_s,
            "processor_rss_mb": stopped.max_rss_mb,
        }

    # ------------------------------------------------------------------------------------- 2. throughput
    def processor_run(self, scenario: str, total: int, first_user: int, idle_baseline: bool) -> dict[str, Any]:
        """Publishes ``total`` commands to private topics, then times `participants process --until-idle`."""
        w = self.world
        settings = w.topics_for(scenario)
        env = w.env(scenario)
        out: dict[str, Any] = {"commands": total}
        if idle_baseline:
            group = f"{settings.consumer_group}-idle"
            w.extra_groups.append(group)
            argv = [PARTICIPANTS, "process", "--until-idle", "--instance-id", f"{settings.instance_id}-idle"]
            idle = run_child([*argv, "--group", group], env, stderr=self.work / f"{scenario}-idle.log")
            out["idle"] = {"wall_s": idle.wall_s, "rss_mb": idle.max_rss_mb, "exit_code": idle.returncode}
            say(f"{scenario}: idle processor {idle.wall_s:.2f} s, {mb(idle.max_rss_mb)}")
        batches = w.make_batches(scenario, math.ceil(total / self.vol.batch_size))
        published = self.publish_batches(settings, batches, total, first_user)
        out["publish_s"] = published["publish_s"]
        out["publish_per_s"] = published["publish_per_s"]
        say(f"{scenario}: published {total} commands in {published['publish_s']:.1f} s")
        log = self.work / f"{scenario}-processor.log"
        argv = [PARTICIPANTS, "process", "--until-idle", "--instance-id", settings.instance_id]
        child = run_child(argv, env, stderr=log, timeout_s=1800, sample_s=0.5)
        s = summarise_log(measure.read_log(log))
        outcomes = self.ledger_outcomes(settings.consumer_group)
        span = s.span_s
        out.update(
            {
                "exit_code": child.returncode,
                "wall_s": child.wall_s,
                "span_s": span,
                "commands_per_s": total / span if span else None,
                "commands_per_s_wall": total / child.wall_s,
                "rss_mb": child.max_rss_mb,
                "rss_profile_mb": child.rss_profile(),
                "cpu_s": child.cpu_s,  # the processor's own CPU (PostgreSQL and Kafka not included)
                "commands_per_cpu_s": ratio(total, child.cpu_s),
                "log": s.to_json(),
                "other_s": (span - s.busy_s) if span is not None else None,  # waiting in consume, idle checks
                "ledger": outcomes,
                "all_enrolled": outcomes.get("ENROLLED") == total and s.commands == total,
            }
        )
        rate = out["commands_per_s"] or 0.0
        say(f"{scenario}: {total} commands in {span or float('nan'):.2f} s = {rate:,.0f}/s, {mb(child.max_rss_mb)}")
        return out

    def throughput(self) -> dict[str, Any]:
        return self.processor_run("throughput", self.vol.throughput_commands, 0, idle_baseline=True)

    def naive(self) -> dict[str, Any]:
        v, w = self.vol, self.world
        settings = w.topics_for("naive", only=("commands", "results", "uploads"))
        batches = w.make_batches("naive", math.ceil(v.naive_commands / v.batch_size))
        published = self.publish_batches(settings, batches, v.naive_commands, 7 * v.batch_size)
        stats = run_naive(settings, w.engine, self.codec, v.naive_commands + len(published["uploads"]))
        span = stats.span_s
        out = {
            **stats.to_json(),
            "publish_s": published["publish_s"],
            "commands_per_s": stats.commands / span if span else None,
            "all_enrolled": stats.outcomes.get("ENROLLED") == v.naive_commands,
        }
        say(f"naive: {stats.commands} commands in {span or float('nan'):.2f} s = {out['commands_per_s'] or 0:,.0f}/s")
        return out

    def ceiling(self) -> dict[str, Any]:
        """apply_commands alone on pre-built commands (no Kafka, no Avro), one transaction per chunk.

        Also, as a what-if for the report (not the product): the same with ``SET LOCAL enable_seqscan = off``,
        interleaved chunk by chunk on its own fresh batches, to show what the lookups' plans cost.
        """
        v, w = self.vol, self.world
        group, topic = f"bench-{w.token}-ceiling", f"bench{w.token}.ceiling.commands"

        def commands(variant: str, first_user: int) -> list[Positioned]:
            batches = w.make_batches(f"ceiling-{variant}", math.ceil(v.ceiling_commands / v.batch_size))
            upload = f"bench-{w.token}-ceiling-{variant}"
            items: list[Positioned] = []
            for i, (start, n) in enumerate(chunks(v.ceiling_commands, v.batch_size)):
                for j in range(n):
                    line = start + j + 2
                    cmd = Command(
                        command_id=f"{upload}:{line}",
                        upload_id=f"{upload}-{i}",
                        batch_id=batches[i],
                        action=Action.ADD,
                        identifier=w.state_id(first_user + start + j),
                        id_type=IdType.STATE_ID,
                        line=line,
                        requested_by=w.admin,
                        requested_at_ms=int(time.time() * 1000),
                    )
                    items.append(Positioned(cmd, i % w.partitions, start + j))
            return items

        variants = {"as-is": commands("plain", 3 * v.batch_size), "no-seqscan": commands("noseq", 5 * v.batch_size)}
        seconds: dict[str, list[float]] = {k: [] for k in variants}
        enrolled = dict.fromkeys(variants, 0)
        for start, n in chunks(v.ceiling_commands, v.ceiling_chunk):
            for variant, items in variants.items():
                raw = w.engine.raw_connection()
                try:
                    t0 = time.perf_counter()
                    cur = raw.cursor()
                    if variant == "no-seqscan":
                        cur.execute("SET LOCAL enable_seqscan = off")
                    now = int(time.time() * 1000)
                    step = apply_commands(cur, items[start : start + n], w.base.ui_participant_limit, now, topic, group)
                    raw.commit()
                    seconds[variant].append(time.perf_counter() - t0)
                    enrolled[variant] += sum(1 for r in step.recorded if r.reason == "ENROLLED")
                finally:
                    raw.close()
        total = sum(seconds["as-is"])
        what_if = sum(seconds["no-seqscan"])
        out = {
            "commands": v.ceiling_commands,
            "chunk": v.ceiling_chunk,
            "seconds": total,
            "chunk_s": spread(seconds["as-is"]),
            "commands_per_s": v.ceiling_commands / total,
            "all_enrolled": enrolled["as-is"] == v.ceiling_commands,
            "no_seqscan": {
                "seconds": what_if,
                "chunk_s": spread(seconds["no-seqscan"]),
                "commands_per_s": v.ceiling_commands / what_if,
                "all_enrolled": enrolled["no-seqscan"] == v.ceiling_commands,
            },
        }
        say(
            f"ceiling: {v.ceiling_commands} commands in {total:.2f} s = {out['commands_per_s']:,.0f}/s "
            f"(what-if without seq scans: {v.ceiling_commands / what_if:,.0f}/s)"
        )
        return out

    # ------------------------------------------------------------------------------------- 3. producer
    def producer(self) -> dict[str, Any]:
        v, w = self.vol, self.world
        settings = w.topics_for("producer", only=("commands", "uploads"))
        env = w.env("producer")
        batch = f"bench-{w.token}-producer-0000"  # need not exist: nothing processes this topic
        path = self.write_csv("producer.csv", [f"PX{w.token}-{i:08d}" for i in range(v.producer_rows)])
        size_mb = path.stat().st_size / 1e6
        real: list[measure.Child] = []
        obvious: list[measure.Child] = []
        for k in range(v.producer_runs):
            argv = [PARTICIPANTS, "add", "--batch", batch, "--as", w.admin, str(path)]
            out, err = self.work / f"producer-{k}.out", self.work / f"producer-{k}.err"
            c = run_child(argv, env, stdout=out, stderr=err, sample_s=0.25)
            published = re.search(r"(\d+) commands published", c.stdout)
            if c.returncode != 0 or not published or int(published.group(1)) != v.producer_rows:
                raise RuntimeError(f"participants add failed ({c.returncode}): {c.stdout[-500:]}")
            real.append(c)
            say(f"producer: participants add {v.producer_rows} rows in {c.wall_s:.2f} s, {mb(c.max_rss_mb)}")
            argv = [PYTHON, "-m", "bench.obvious_producer", "--topic", settings.topics.commands]
            argv += ["--batch", batch, "--as", w.admin, str(path)]
            o = run_child(argv, env, stdout=self.work / f"obvious-{k}.out", stderr=self.work / f"obvious-{k}.err")
            if o.returncode != 0:
                raise RuntimeError(f"obvious producer failed ({o.returncode})")
            obvious.append(o)
            say(f"producer: obvious loop      {v.producer_rows} rows in {o.wall_s:.2f} s, {mb(o.max_rss_mb)}")
        started = time.perf_counter()
        with open(path, "rb") as f:
            floor_rows = sum(1 for r in read_participants(f) if isinstance(r, InputRow))
        floor_s = time.perf_counter() - started
        real_s = spread([c.wall_s for c in real])
        obvious_s = spread([c.wall_s for c in obvious])
        return {
            "rows": v.producer_rows,
            "file_mb": size_mb,
            "wall_s": real_s,
            "rows_per_s": v.producer_rows / real_s["median"],
            "rss_mb": peak([c.max_rss_mb for c in real]),
            "rss_profile_mb": real[0].rss_profile(),
            "cpu_s": spread([c.cpu_s for c in real if c.cpu_s is not None]),
            "obvious_wall_s": obvious_s,
            "obvious_rows_per_s": v.producer_rows / obvious_s["median"],
            "obvious_rss_mb": peak([c.max_rss_mb for c in obvious]),
            "obvious_cpu_s": spread([c.cpu_s for c in obvious if c.cpu_s is not None]),
            "speedup_vs_obvious": ratio(obvious_s["median"], real_s["median"]),
            "reader_floor_s": floor_s,
            "reader_floor_rows": floor_rows,
            "reader_share": floor_s / real_s["median"],
        }

    # ------------------------------------------------------------------------------------- 4. memory
    def memory(self) -> dict[str, Any]:
        if not self.vol.memory_commands:
            return {"skipped": "quick run: the throughput run's peak RSS stands in"}
        return self.processor_run("memory", self.vol.memory_commands, 0, idle_baseline=False)

    # ------------------------------------------------------------------------------------- profile
    def profile(self) -> dict[str, Any]:
        """The processor under cProfile on its own workload (slower than unprofiled: for shares, not rates)."""
        w = self.world
        settings = w.topics_for("profile")
        env = w.env("profile")
        total = self.vol.profile_commands
        batches = w.make_batches("profile", math.ceil(total / self.vol.batch_size))
        self.publish_batches(settings, batches, total, 0)
        prof = RESULTS / "processor.prof"
        argv = [PYTHON, "-m", "cProfile", "-o", str(prof), PARTICIPANTS, "process", "--until-idle"]
        child = run_child([*argv, "--instance-id", settings.instance_id], env, stderr=self.work / "profile.log")
        buf = io.StringIO()
        stats = pstats.Stats(str(prof), stream=buf)
        stats.sort_stats("tottime").print_stats(25)
        top = buf.getvalue()
        print(top)
        return {"commands": total, "wall_s": child.wall_s, "file": str(prof.relative_to(ROOT)), "top_tottime": top}


def code_fingerprint() -> dict[str, Any]:
    """Which code was measured (no git here): a hash of processor/, producer/ and schemas/, and the newest file."""
    files = sorted(
        p for d in ("processor", "producer", "schemas") for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".avsc")
    )
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(ROOT)).encode())
        digest.update(p.read_bytes())
    newest = max(files, key=lambda p: p.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:16],
        "files": len(files),
        "newest": str(newest.relative_to(ROOT)),
        "newest_mtime": datetime.fromtimestamp(newest.stat().st_mtime, UTC).isoformat(timespec="seconds"),
    }


def keep_logs(work: Path, dest: Path) -> None:
    """Copies the run's logs (processor JSON logs, CLI output) next to the JSON (latest-logs/) for a closer look."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    for path in work.iterdir():
        if path.suffix in (".log", ".err", ".out"):
            shutil.copy2(path, dest / path.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="scaled-down volumes (about 1-2 minutes)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument("--profile", action="store_true", help="also run the processor under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the bench's topics and rows")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=N", help="override a volume, e.g. memory_commands=0"
    )
    args = parser.parse_args(argv)

    vol = QUICK if args.quick else FULL
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in Volumes.__dataclass_fields__:
            parser.error(f"--set: no volume named {name!r} (one of {', '.join(Volumes.__dataclass_fields__)})")
        vol = replace(vol, **{name: int(value)})
    wanted = [s for s in SCENARIOS if args.only is None or s in args.only]
    base = with_stored_credentials(Settings.from_env(), "admin")  # the bench creates topics and grants ACLs
    engine: Engine = create_engine(base.database_url)
    token = time.strftime("%y%m%d%H%M%S")
    world = World(base, engine, token)
    work = Path(tempfile.mkdtemp(prefix=f"bench{token}-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    codec = default_codec()
    suite = Suite(vol, world, codec, work)
    started = time.perf_counter()
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "token": token,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "volumes": asdict(vol),
        "code": code_fingerprint(),
        "load_start": measure.load(),
        "scenario_load": {},
    }
    say(f"{meta['mode']} run, token {token}, load {meta['load_start']}, work dir {work}")
    failures: dict[str, str] = {}
    try:
        pool = max((1 + vol.latency_runs) * vol.latency_rows + vol.latency_runs + 1, 2 * vol.batch_size)
        say(f"importing {pool} bench users: {world.make_users(pool):.1f} s")
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "latency": suite.latency,
            "throughput": suite.throughput,
            "naive": suite.naive,
            "ceiling": suite.ceiling,
            "producer": suite.producer,
            "memory": suite.memory,
        }
        if args.profile:
            steps["profile"] = suite.profile
            wanted.append("profile")
        for name in wanted:
            before = measure.load()
            t0 = time.perf_counter()
            try:
                suite.results[name] = steps[name]()
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
                traceback.print_exc()
                failures[name] = f"{type(exc).__name__}: {exc}"
            meta["scenario_load"][name] = {"before": before, "after": measure.load(), "s": time.perf_counter() - t0}
    finally:
        if args.keep:
            say(f"keeping topics and rows of token {token}")
        else:
            t0 = time.perf_counter()
            problems = world.cleanup()
            say(f"cleanup in {time.perf_counter() - t0:.1f} s" + (f": {problems}" if problems else ""))
        keep_logs(work, args.out.parent / f"{args.out.stem}-logs")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        engine.dispose()
    meta["load_end"] = measure.load()
    meta["seconds"] = time.perf_counter() - started
    targets: list[Target] = targets_from(suite.results, quick=args.quick)
    doc = {
        "meta": meta,
        "scenarios": suite.results,
        "failures": failures,
        "targets": [t.to_json() for t in targets],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    print(render(doc, targets))
    print(f"written to {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
