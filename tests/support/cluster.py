"""A test's own three-node Kafka cluster, started with scripts/stack in a private folder and always torn down.

It shares the worktree's PostgreSQL cluster and secrets (the same principals and passwords), and takes a port
block no one listens on, so the suite's own stack (one node or three) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TopicCollection

from enrolment.kafka.clients import admin_client
from enrolment.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NODES = (1, 2, 3)
STRIDE = 10  # scripts/stack's default: node N listens on base + 10*(N-1) + 0..3
BENCH_OFFSET = 5  # the bench's PLAINTEXT listener (private_stack(bench=True)): between node 1's block and node 2's


@dataclass(frozen=True)
class Cluster:
    folder: Path
    base: int
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"localhost:{self.base + STRIDE * (n - 1)}" for n in NODES)

    def pid(self, node: int) -> int:
        """The pid of a node's JVM, from the stack's pid file."""
        path = self.folder / ("kafka.pid" if node == 1 else f"kafka-{node}/kafka.pid")
        return int(path.read_text().strip())

    @property
    def bench_port(self) -> int:
        return self.base + BENCH_OFFSET

    def stack(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Runs scripts/stack against this cluster's folder and ports; a failure fails the test with its output."""
        done = subprocess.run(
            [str(ROOT / "scripts" / "stack"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"scripts/stack {' '.join(args)} failed:\n{done.stderr[-3000:]}"
        return done


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_block(start: int) -> int:
    """A base port whose three node blocks (base + 10*(N-1) + 0..3) are all free."""
    for base in range(start, start + 2000, 100):
        if all(_free(base + STRIDE * (n - 1) + k) for n in NODES for k in range(4)) and _free(base + BENCH_OFFSET):
            return base
    raise AssertionError(f"no free block of Kafka ports from {start}")


def _env(folder: Path, base: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "STACK_KAFKA", "STACK_CONTROLLER"))}
    env.pop("STACK_BENCH_PLAINTEXT_PORT", None)
    env.update(
        {
            "STACK_DIR": str(folder),
            "PARTICIPANTS_SECRETS_DIR": os.environ.get("PARTICIPANTS_SECRETS_DIR", str(ROOT / ".stack" / "secrets")),
            "STACK_KAFKA_PORT": str(base),
            "STACK_CONTROLLER_PORT": str(base + 1),
            "STACK_KAFKA_TLS_PORT": str(base + 2),
            "STACK_KAFKA_INTERNAL_PORT": str(base + 3),
        }
    )
    return env


def _stop(cluster: Cluster) -> None:
    """SIGTERM to every node still running, SIGKILL after 30 s (scripts/stack down would stop PostgreSQL too)."""
    pids = []
    for node in NODES:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = cluster.pid(node)
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + 30
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def private_stack(folder: Path, brokers: int = 3, bench: bool = False) -> Iterator[Cluster]:
    """`scripts/stack up --brokers N` in `folder`; every node is stopped afterwards, even after a failure.

    `bench` opens the bench's PLAINTEXT listener on node 1 at `Cluster.bench_port` (base + 5).
    """
    base = free_block(int(os.environ.get("STACK_KAFKA_PORT", "9092")) + 300)
    env = _env(folder, base)
    if bench:
        env["STACK_BENCH_PLAINTEXT_PORT"] = str(base + BENCH_OFFSET)
    cluster = Cluster(folder, base, env)
    try:
        cluster.stack("up", "--brokers", str(brokers))
        yield cluster
    finally:
        _stop(cluster)


def three_brokers(folder: Path) -> contextlib.AbstractContextManager[Cluster]:
    """A private three-node cluster (tests/e2e/test_three_brokers.py)."""
    return private_stack(folder, 3)


def out_of_sync(settings: Settings, topics: list[str], node: int) -> list[str]:
    """The partitions (topic-partition) whose in-sync replicas lack `node`, per the AdminClient's describe_topics."""
    admin = admin_client(settings)  # held: a dropped client cancels its futures
    described = admin.describe_topics(TopicCollection(topics), request_timeout=10)
    missing = []
    for name, future in described.items():
        for part in future.result().partitions:
            if node not in {r.id for r in part.isr}:
                missing.append(f"{name}-{part.id}")
    return missing
