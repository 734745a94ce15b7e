"""Where each consumer has got, kept in PostgreSQL and moved in the same transaction as the effects it covers.

Two tables hold positions: ``consumer_positions`` (the processor's groups; with ``batch_start``, the first
offset of the last applied batch, which bounds the in-doubt window) and ``dash_positions`` (the dashboard's
read model). A move is a compare-and-set, the first statement of its transaction: it takes the row lock, so
two owners of one partition serialise and the loser — a zombie after a rebalance — fails instead of applying
twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TopicPartitionKey = tuple[str, int]


class PositionConflict(Exception):
    """Another owner moved a partition's stored position: this instance is a zombie for it."""


@dataclass(frozen=True, slots=True)
class Position:
    next_offset: int
    batch_start: int  # first offset of the last applied batch (equals next_offset where not kept)


@dataclass(frozen=True, slots=True)
class PositionTable:
    name: str
    keeps_batch_start: bool


PROCESSOR_POSITIONS = PositionTable("consumer_positions", keeps_batch_start=True)
DASHBOARD_POSITIONS = PositionTable("dash_positions", keeps_batch_start=False)

Moves = Mapping[TopicPartitionKey, tuple[Position | None, Position]]


def read(
    cur: Any, table: PositionTable, group: str, topics: Sequence[str] | None = None
) -> dict[TopicPartitionKey, Position]:
    """Stored positions of a group (of some topics only, when given)."""
    start = "batch_start" if table.keeps_batch_start else "next_offset"
    sql = f"SELECT topic, kafka_partition, next_offset, {start} FROM {table.name} WHERE group_id = %s"
    params: tuple[Any, ...] = (group,)
    if topics is not None:
        sql += " AND topic = ANY(%s)"
        params = (group, list(topics))
    cur.execute(sql, params)
    return {(str(t), int(p)): Position(int(n), int(s)) for t, p, n, s in cur.fetchall()}


def claim(cur: Any, table: PositionTable, group: str, moves: Moves) -> None:
    """Compare-and-set of each partition's position; raises PositionConflict if one moved meanwhile."""
    for (topic, partition), (expected, new) in sorted(moves.items()):
        if expected is None:
            _insert(cur, table, group, topic, partition, new)
        else:
            _update(cur, table, group, topic, partition, expected, new)
        if cur.fetchone() is None:
            raise PositionConflict(
                f"{topic}[{partition}] moved by another owner of group {group} (expected {expected})"
            )


def _insert(cur: Any, table: PositionTable, group: str, topic: str, partition: int, new: Position) -> None:
    if table.keeps_batch_start:
        cur.execute(
            f"INSERT INTO {table.name} (group_id, topic, kafka_partition, next_offset, batch_start) "
            "VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING 1",
            (group, topic, partition, new.next_offset, new.batch_start),
        )
    else:
        cur.execute(
            f"INSERT INTO {table.name} (group_id, topic, kafka_partition, next_offset) "
            "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING 1",
            (group, topic, partition, new.next_offset),
        )


def _update(
    cur: Any, table: PositionTable, group: str, topic: str, partition: int, expected: Position, new: Position
) -> None:
    start = ", batch_start = %(start)s" if table.keeps_batch_start else ""
    cur.execute(
        f"UPDATE {table.name} SET next_offset = %(next)s{start}, updated_at = now() "
        "WHERE group_id = %(group)s AND topic = %(topic)s AND kafka_partition = %(partition)s "
        "AND next_offset = %(expected)s RETURNING 1",
        {
            "next": new.next_offset,
            "start": new.batch_start,
            "group": group,
            "topic": topic,
            "partition": partition,
            "expected": expected.next_offset,
        },
    )


def forget(cur: Any, table: PositionTable, group: str) -> int:
    """Deletes a group's positions (a finished replay group, a read model being rebuilt); returns the count."""
    cur.execute(f"DELETE FROM {table.name} WHERE group_id = %s", (group,))
    return int(cur.rowcount)
