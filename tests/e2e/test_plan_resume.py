"""An approved plan whose publishing stopped is resumed, not reopened; a bad request or file name refuses the plan
before anything is decided; an overdue plan is expired (and audited) once — the service in-process, on the real
stack (the processor in-process until idle)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from enrolment.kafka import clients
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.settings import Settings
from producer import plans as service
from producer.publish import publish_upload
from tests.e2e.test_plans import enrol, ids_file, one_json, run
from tests.support.helpers import World, process, rows

pytestmark = pytest.mark.integration


def stopping_after(n: int) -> Any:
    """A publish_upload that delivers the first ``n`` commands, then loses the broker (no seal is sent)."""

    def publish(settings: Settings, codec: Any, request: Any, items: Any, **kw: Any) -> Any:
        producer = clients.bulk_producer(settings)

        def cut() -> Iterator[Any]:
            for i, row in enumerate(items):
                if i == n:
                    producer.flush(30)
                    raise BrokerUnavailable("Kafka went away.")
                yield row

        return publish_upload(settings, codec, request, cut(), **{**kw, "producer": producer})

    return publish


def test_an_approval_stopped_part_way_stays_approved_and_approving_again_finishes_it(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=100)
    batch = world.batch("resume")
    listed = ids_file(tmp_path / "t.csv", world, range(100))
    plan_id = one_json(run(s, "plan", "add", str(listed), "--batch", batch, "--as", world.admin, "--json"))["plan_id"]
    enrol(s, engine, world, batch, range(10))  # changed since the plan: fixed at the approval

    monkeypatch.setattr(service, "publish_upload", stopping_after(40))
    with pytest.raises(BrokerUnavailable) as stopped:
        service.approve(s, engine, plan_id, world.admin)
    sentence = str(stopped.value)
    assert f"Plan {plan_id} is approved; publishing stopped" in sentence
    assert f"Run `participants plan approve {plan_id}` again to finish it" in sentence
    shown = service.show(engine, plan_id)
    assert shown["status"] == "approved" and shown["upload_id"], shown
    upload_id = shown["upload_id"]
    process(s, engine)  # the 40 delivered commands are applied
    enrol(s, engine, world, batch, range(90, 95))  # after the approval: not in the fixed set

    rejected = run(s, "plan", "reject", plan_id, "--as", world.admin)
    assert rejected.returncode == 1 and "is approved, not waiting" in rejected.stderr.decode()

    monkeypatch.undo()
    resumed = run(s, "plan", "approve", plan_id, "--as", world.admin, "--json", "--report", str(tmp_path / "r"))
    assert resumed.returncode == 0, resumed.stderr.decode()
    answer = one_json(resumed)
    assert answer["upload_id"] == upload_id and answer["changed_since_plan"] == 10
    process(s, engine)
    done = one_json(run(s, "status", upload_id, "--json"))
    assert done["reasons"].get("CHANGED_SINCE_PLAN") == 10 and done["reasons"].get("ENROLLED") == 85, done
    assert service.show(engine, plan_id)["status"] == "applied"
    with engine.connect() as conn:
        applied = conn.execute(
            text("SELECT count(*), count(DISTINCT command_id) FROM command_ledger WHERE upload_id = :u"),
            {"u": upload_id},
        ).one()
    assert applied[0] == applied[1], "each command applied once"
    assert len(world.members(batch)) == 100


def test_a_plan_whose_request_cannot_be_built_is_refused_and_keeps_waiting(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=5)
    batch = world.batch("badname")
    named = tmp_path / "t\x01.csv"
    ids_file(named, world, range(5))
    refused = run(s, "plan", "add", str(named), "--batch", batch, "--as", world.admin)
    assert refused.returncode == 2 and "file name" in refused.stderr.decode(), refused.stderr.decode()

    plan_id = service.make_plan(s, engine, "add", batch, rows([world.state_id(0)]), world.admin).plan_id
    with engine.begin() as conn:  # a plan stored before names were checked
        conn.execute(text("UPDATE plans SET file_name = :f WHERE plan_id = :p"), {"f": "a\x07b.csv", "p": plan_id})
    with pytest.raises(service.PlanRefused) as bad:
        service.approve(s, engine, plan_id, world.admin)
    assert bad.value.code == "CONTROL_CHARACTER" and bad.value.exit_code == 2
    assert service.show(engine, plan_id)["status"] == "waiting"


def test_an_overdue_plan_is_expired_once_even_when_the_decision_is_refused(
    isolated_settings: Settings, engine: Engine, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=3)
    batch = world.batch("stale")
    plan_id = service.make_plan(s, engine, "add", batch, rows([world.state_id(0)]), world.admin).plan_id
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE plans SET expires_at = now() - interval '1 minute' WHERE plan_id = :p"), {"p": plan_id}
        )
    caplog.set_level(logging.INFO, logger="audit")
    for decide in (service.approve, service.reject):
        with pytest.raises(service.PlanRefused) as late:
            decide(s, engine, plan_id, world.admin)
        assert late.value.code == "PLAN_EXPIRED"
        with engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM plans WHERE plan_id = :p"), {"p": plan_id}).scalar()
        assert status == "expired"
    service.show(engine, plan_id)
    events = [r for r in caplog.records if getattr(r, "event", "") == "PLAN_EXPIRED"]
    assert len(events) == 1
