"""The cost of SCRAM and TLS, end to end: `add --wait` of a 10k-row CSV over PLAINTEXT, SASL_PLAINTEXT, SASL_SSL.

    .venv/bin/python -m bench.secure [--rows 10000] [--runs 3]

One broker, the stack's own, with three listeners: the bench restarts it with an extra PLAINTEXT listener on
127.0.0.1 (``STACK_BENCH_PLAINTEXT_PORT``, default the client port + 4; its anonymous principal may only touch
the bench's own ``bench*`` topics, groups and transactional ids, ``acls.bench_grants``) for the baseline, and
restores the normal stack at the end (a plain ``scripts/stack up`` removes that listener and those ACLs again).
Each protocol has private topics, a group and a processor of its own connected over that listener (SCRAM and
TLS with the components' generated credentials and the local CA); the rounds alternate the protocols so a
change in the machine's load falls on all alike. The first round is a warm-up. Reported: the median seconds
from start to the summary line per protocol, and each median over PLAINTEXT's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from bench.measure import Background, run_until_marker
from bench.world import PARTICIPANTS, ROOT, World
from enrolment.settings import Settings, with_stored_credentials

RESULTS = ROOT / "bench" / "results"


def say(msg: str) -> None:
    print(f"[secure {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def listeners() -> dict[str, dict[str, str]]:
    """The client settings of each protocol on the stack's broker (ports as scripts/stack reads them)."""
    client = int(os.environ.get("STACK_KAFKA_PORT", "9092"))
    tls = int(os.environ.get("STACK_KAFKA_TLS_PORT", "9094"))
    plain = int(os.environ.get("STACK_BENCH_PLAINTEXT_PORT", str(client + 4)))
    ca = str(ROOT / ".stack" / "tls" / "ca.pem")
    return {
        "PLAINTEXT": {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{plain}"},
        "SASL_PLAINTEXT": {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{client}",
        },
        "SASL_SSL": {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{tls}",
            "KAFKA_SSL_CA_LOCATION": ca,
        },
    }


def stack_up(plaintext_port: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STACK_BENCH_PLAINTEXT_PORT"}
    if plaintext_port:
        env["STACK_BENCH_PLAINTEXT_PORT"] = plaintext_port
    subprocess.run([str(ROOT / "scripts" / "stack"), "up"], env=env, check=True, capture_output=True, timeout=600)


def upload(env: dict[str, str], admin: str, batch: str, path: Path, err: Path) -> dict[str, Any]:
    argv = [PARTICIPANTS, "add", "--batch", batch, "--as", admin, str(path), "--wait", "--timeout", "300"]
    t = run_until_marker(argv, env, "  REJECTED", stderr=err)
    reasons = {r: int(n) for r, n in re.findall(r"\((\w+)\) (\d+)", t.child.stdout)}
    return {"summary_s": t.marker_s, "exit_code": t.child.returncode, "reasons": reasons}


def measure(world: World, rows: int, runs: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """Starts a processor per protocol, then alternates the uploads; returns each protocol's runs."""
    modes = listeners()
    files = []
    for k in range(runs + 1):
        path = work / f"upload-{k}.csv"
        path.write_text("state_id\n" + "".join(f"{world.state_id(k * rows + j)}\n" for j in range(rows)))
        files.append(path)
    envs: dict[str, dict[str, str]] = {}
    batches: dict[str, list[str]] = {}
    processors: list[Background] = []
    try:
        for mode, client in modes.items():
            name = mode.lower().replace("_", "-")
            settings = world.topics_for(name)
            envs[mode] = {**world.env(name), **client}
            batches[mode] = world.make_batches(name, runs + 1)
            proc = Background(
                [PARTICIPANTS, "process", "--instance-id", settings.instance_id], envs[mode], work / f"{name}.log"
            )
            processors.append(proc)
            say(f"{mode}: processor assigned after {proc.wait_for_log('partitions assigned', 120):.2f} s")
        out: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for k in range(runs + 1):
            for mode in modes:
                run = upload(envs[mode], world.admin, batches[mode][k], files[k], work / "cli.err")
                run["warm_up"] = k == 0
                out[mode].append(run)
                say(f"round {k}{' (warm-up)' if k == 0 else ''} {mode:<15} {run['summary_s'] or float('nan'):6.2f} s")
        return out
    finally:
        for proc in processors:
            proc.stop()


def summarise(rows: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode, done in runs.items():
        timed = [r["summary_s"] for r in done if not r["warm_up"] and r["summary_s"] is not None]
        ok = all(r["reasons"].get("ENROLLED") == rows for r in done if not r["warm_up"])
        figures[mode] = {"median_s": statistics.median(timed) if timed else None, "runs_s": timed, "all_enrolled": ok}
    base = figures["PLAINTEXT"]["median_s"]
    for fig in figures.values():
        fig["over_plaintext"] = fig["median_s"] / base if base and fig["median_s"] else None
    return figures


def render(rows: int, figures: dict[str, Any]) -> str:
    lines = [f"{rows}-row add --wait, seconds to summary (median of the timed rounds; lower is better)"]
    for mode, fig in figures.items():
        ratio = f"{fig['over_plaintext']:.3f}" if fig["over_plaintext"] else "n/a"
        runs = ", ".join(f"{s:.2f}" for s in fig["runs_s"])
        median = f"{fig['median_s']:.3f}" if fig["median_s"] is not None else "n/a"
        lines.append(
            f"  {mode:<15} median {median} s  /PLAINTEXT {ratio}  runs [{runs}]  all enrolled {fig['all_enrolled']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per protocol (after one warm-up)")
    parser.add_argument("--out", type=Path, default=RESULTS / "secure.json")
    args = parser.parse_args(argv)
    plain_port = listeners()["PLAINTEXT"]["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    say(f"restarting the stack's broker with a PLAINTEXT baseline listener on 127.0.0.1:{plain_port}")
    stack_up(plain_port)
    base = with_stored_credentials(Settings.from_env(), "admin")
    engine = create_engine(base.database_url)
    world = World(base, engine, "s" + time.strftime("%y%m%d%H%M%S"), partitions=12)
    work = Path(tempfile.mkdtemp(prefix="bench-secure-"))
    try:
        world.make_users(args.rows * (args.runs + 1))
        runs = measure(world, args.rows, args.runs, work)
    finally:
        problems = world.cleanup()
        if problems:
            say(f"cleanup: {problems}")
        say("restoring the stack (no PLAINTEXT listener)")
        stack_up(None)
    figures = summarise(args.rows, runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": args.rows, "runs": args.runs, "figures": figures}, indent=2) + "\n")
    print(render(args.rows, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
