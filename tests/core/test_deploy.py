"""The operations files load, and every metric they name is one the code registers (issue 11, item 6)."""

from __future__ import annotations

import configparser
import json
import re
from dataclasses import fields
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import dashboard.consumer  # noqa: F401 - registers the dashboard's metrics
import processor.metrics  # noqa: F401 - registers the processor's metrics
from enrolment.errors import EXIT_TIMEOUT
from enrolment.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bparticipants_[a-z_]+\b")


def _registered() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
        if family.type == "counter":  # a labelled counter has no samples until first used
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def _referenced(text: str) -> set[str]:
    return {m for m in METRIC.findall(text) if not m.startswith("participants_processor")}


def test_alert_rules_load_and_name_registered_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "ParticipantsLagGrowing",
        "ParticipantsOldestUnappliedCommand",
        "ParticipantsDeadLetters",
        "ParticipantsNotReady",
    }
    assert alerts["ParticipantsLagGrowing"]["for"] == "5m"
    assert "> 300" in alerts["ParticipantsOldestUnappliedCommand"]["expr"]
    used = set().union(*(_referenced(r["expr"]) for r in alerts.values()))
    assert used and used <= _registered(), used - _registered()


def test_grafana_dashboard_loads_and_names_registered_metrics() -> None:
    board = json.loads((DEPLOY / "grafana" / "participants.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = set().union(*(_referenced(e) for e in exprs))
    assert {"participants_consumer_lag", "participants_oldest_unapplied_command_age_seconds"} <= used
    assert used <= _registered(), used - _registered()


def test_systemd_units_restart_on_failure() -> None:
    for name in ("participants-processor@.service", "participants-dashboard.service"):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read_string((DEPLOY / "systemd" / name).read_text())
        service = unit["Service"]
        assert service["Restart"] == "on-failure" and int(service["RestartSec"]) > 0
        assert service["EnvironmentFile"].startswith("/etc/participants/")
        assert "participants " in service["ExecStart"]
        # systemd reads the start limits in [Unit] only: in [Service] they would be ignored
        assert "StartLimitBurst" not in service and int(unit["Unit"]["StartLimitBurst"]) > 0


def _service(path: Path) -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(path.read_text())
    return unit["Service"]


def test_each_unit_runs_as_its_own_component_with_its_own_user_and_secrets() -> None:
    """A shared EnvironmentFile or OS user would give two components one Kafka principal and one database role."""
    from participants.cli import build_parser, component_of

    seen: dict[str, tuple[str, str]] = {}
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        service = _service(path)
        argv = service["ExecStart"].split()
        component = component_of(build_parser().parse_args(argv[1:]))
        assert service["EnvironmentFile"] == f"/etc/participants/{component}.env", path.name
        assert service["User"] == f"participants-{component}", path.name
        seen[path.name] = (component, service["User"])
    assert {c for c, _ in seen.values()} == {"processor", "dashboard", "producer"}, seen


def test_the_plan_expiry_timer_runs_the_sweep_as_the_producer() -> None:
    from participants.cli import build_parser, component_of

    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read_string((DEPLOY / "systemd" / "participants-plan-expire.timer").read_text())
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service_name = timer["Timer"]["Unit"]
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "systemd" / service_name).read_text())
    service = unit["Service"]
    assert service["Type"] == "oneshot" and service["EnvironmentFile"].startswith("/etc/participants/")
    argv = service["ExecStart"].split()
    assert argv[0].endswith("/participants") and argv[1:] == ["plan", "expire"]
    args = build_parser().parse_args(argv[1:])
    assert component_of(args) == "producer" and args.func.__name__ == "cmd_plan_expire"


def test_the_processor_unit_takes_an_abandoned_stop_for_a_clean_one() -> None:
    """SIGTERM past PROCESSOR_STOP_TIMEOUT_S exits EXIT_TIMEOUT (4): a requested stop, not a failure to restart."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((DEPLOY / "systemd" / "participants-processor@.service").read_text())
    service = unit["Service"]
    assert str(EXIT_TIMEOUT) in service["SuccessExitStatus"].split()
    stop_bound = next(f.default for f in fields(Settings) if f.name == "stop_timeout_s")
    assert isinstance(stop_bound, float)
    assert int(service["TimeoutStopSec"]) > stop_bound + 2  # past the bound and the kernel's backstop
