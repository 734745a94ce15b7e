"""Sunbird API bench: concurrent single-user calls against a real dashboard process, and what they cost it.

    .venv/bin/python -m bench.sunbird_api [--concurrency 50] [--rounds 3]

Runs `participants process` and `participants dashboard` on private topics, then sends rounds of
``concurrency`` simultaneous `POST /v1/course/batch/users/add/{batchId}` calls of one user each (after one
warm-up round) and prints requests/s, p50/p95 latency, and the dashboard process's threads and its
connections to Kafka and PostgreSQL before, at the peak of, and after the rounds (from /proc).  Writes
bench/results/sunbird_api.json.  No asserts here: tests/dashboard/test_sunbird_load.py holds the checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine

from bench.world import PARTICIPANTS, World
from enrolment.settings import Settings, with_stored_credentials
from enrolment.store.tokens import create_token

RESULTS = Path(__file__).resolve().parent / "results"


def threads_of(pid: int) -> int:
    """The process's thread count (/proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no thread count for process {pid}")


def connections_of(pid: int, ports: set[int]) -> int:
    """The process's established TCP connections to any of ``ports`` (its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            remote_port, state, inode = int(cols[2].rsplit(":", 1)[1], 16), cols[3], cols[9]
            if state == "01" and inode in inodes and remote_port in ports:
                count += 1
    return count


@dataclass
class Sample:
    """Threads and backend connections of a process over a run: before, peak, after."""

    pid: int
    ports: set[int]
    threads: list[int] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)

    def take(self) -> None:
        self.threads.append(threads_of(self.pid))
        self.connections.append(connections_of(self.pid, self.ports))

    def summary(self) -> dict[str, int]:
        return {
            "threads_before": self.threads[0],
            "threads_peak": max(self.threads),
            "threads_after": self.threads[-1],
            "connections_before": self.connections[0],
            "connections_peak": max(self.connections),
            "connections_after": self.connections[-1],
        }


async def burst(url: str, batch_id: str, token: str, users: list[str], timeout_s: float) -> list[tuple[int, float]]:
    """One simultaneous call per user (one id each): (HTTP status, seconds) per call."""
    limits = httpx.Limits(max_connections=len(users), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:

        async def one(user: str) -> tuple[int, float]:
            started = time.perf_counter()
            r = await client.post(
                f"/v1/course/batch/users/add/{batch_id}",
                json={"request": {"userIds": [user]}},
                headers={"x-authenticated-user-token": token, "X-msgId": user},
            )
            return r.status_code, time.perf_counter() - started

        return list(await asyncio.gather(*(one(u) for u in users)))


async def sampled_burst(sample: Sample, *args: Any) -> list[tuple[int, float]]:
    """A burst while sampling the server every 50 ms."""
    task = asyncio.ensure_future(burst(*args))
    while not task.done():
        sample.take()
        await asyncio.sleep(0.05)
    sample.take()
    return task.result()


def figures(calls: list[tuple[int, float]], seconds: float) -> dict[str, Any]:
    latencies = sorted(s for _code, s in calls)
    return {
        "calls": len(calls),
        "ok": sum(1 for code, _s in calls if code == 200),
        "statuses": sorted({code for code, _s in calls}),
        "requests_per_s": round(len(calls) / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the dashboard did not answer on {url} within {timeout_s:.0f} s")


def run_rounds(url: str, pid: int, ports: set[int], batch: str, token: str, users: list[str], n: int) -> dict[str, Any]:
    """A warm-up round, then ``len(users) // n`` users per round over n rounds, sampled."""
    per = len(users) // (n + 1)
    asyncio.run(burst(url, batch, token, users[:per], 60.0))  # warm-up: clients and pool started
    time.sleep(1.0)
    sample = Sample(pid, ports)
    calls: list[tuple[int, float]] = []
    started = time.perf_counter()
    for r in range(1, n + 1):
        calls += asyncio.run(sampled_burst(sample, url, batch, token, users[r * per : (r + 1) * per], 60.0))
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    sample.take()
    return {**figures(calls, seconds), **sample.summary()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "sunbird_api.json")
    args = parser.parse_args(argv)
    base = with_stored_credentials(Settings.from_env(), "admin")
    world = World(base, create_engine(base.database_url), "sb" + time.strftime("%y%m%d%H%M%S"), partitions=4)
    children: list[subprocess.Popen[bytes]] = []
    try:
        world.make_users(args.concurrency * (args.rounds + 1))
        batch = world.make_batches("sunbird", 1)[0]
        settings = world.topics_for("sunbird")
        env = world.env("sunbird")
        port = free_port()
        quiet = subprocess.DEVNULL
        children.append(subprocess.Popen([PARTICIPANTS, "process"], env=env, stdout=quiet, stderr=quiet))
        dash = subprocess.Popen([PARTICIPANTS, "dashboard", "--port", str(port)], env=env, stdout=quiet, stderr=quiet)
        children.append(dash)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, dash)
        token = create_token(world.engine, world.admin, "bench")
        ports = {int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1]), world.engine.url.port or 5432}
        users = [world.user_id(i) for i in range(world.users)]
        result = {
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            **run_rounds(url, dash.pid, ports, batch, token, users, args.rounds),
        }
    finally:
        for child in children:
            child.terminate()
            child.wait(30)
        problems = world.cleanup()
        if problems:
            print(f"cleanup: {problems}", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Sunbird API: {r['rounds']} rounds of {r['concurrency']} concurrent single-user add calls "
            f"(after one warm-up round), real processor and dashboard processes",
            f"  answered 200: {r['ok']}/{r['calls']} (statuses {r['statuses']})",
            f"  requests/s: {r['requests_per_s']}   latency p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
            f"max {r['max_ms']} ms",
            f"  dashboard threads: before {r['threads_before']}, peak {r['threads_peak']}, after {r['threads_after']}",
            f"  dashboard connections to Kafka and PostgreSQL: before {r['connections_before']}, "
            f"peak {r['connections_peak']}, after {r['connections_after']}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
