"""The locks match pyproject.toml: every direct dependency is locked at a version its specifier allows, with hashes.

requirements.lock (runtime and the ``test`` extra) is what ``make install`` and CI install;
requirements-runtime.lock (runtime only, the same versions) is what the Docker image installs.
Both are made by ``make lock`` for Python 3.11 on Linux.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "requirements.lock"
RUNTIME = ROOT / "requirements-runtime.lock"
# The platform the locks are made for: markers of pyproject's requirements are read for it.
TARGET = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux", "os_name": "posix"}
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Locked:
    name: NormalizedName
    version: Version
    hashes: int
    line: str


def parse_lock(path: Path) -> dict[NormalizedName, Locked]:
    """``name==version`` entries, continuation lines joined, comments dropped; options other than --hash refused."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line and not pending:
            continue
        pending += " " + line.removesuffix("\\").strip()
        if not line.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    assert not pending, f"{path.name}: ends inside a continued line"
    entries: dict[NormalizedName, Locked] = {}
    for line in logical:
        spec, *options = line.split(" --")
        assert not spec.startswith("-"), f"{path.name}: an option the lock must not carry: {line[:80]}"
        others = [o for o in options if not o.startswith("hash=")]
        assert not others, f"{path.name}: {spec}: options other than --hash: {others}"
        req = Requirement(spec)
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{path.name}: {spec} is not pinned with =="
        name = canonicalize_name(req.name)
        assert name not in entries, f"{path.name}: {name} twice"
        entries[name] = Locked(name, Version(pins[0].version), len(HASH.findall(line)), spec)
    return entries


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def requirements(group: str | None) -> list[Requirement]:
    """The runtime dependencies (group None) or an extra's; only those that apply on the locks' platform."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    reqs = [Requirement(r) for r in raw]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({**TARGET, "extra": group or ""})]


def build_requirements() -> list[Requirement]:
    build = pyproject()["build-system"]
    assert isinstance(build, dict)
    return [Requirement(r) for r in build["requires"]]


def unmet(reqs: list[Requirement], lock: dict[NormalizedName, Locked]) -> list[str]:
    problems = []
    for req in reqs:
        locked = lock.get(canonicalize_name(req.name))
        if locked is None:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(locked.version, prereleases=True):
            problems.append(f"{req}: the lock has {locked.version}")
    return problems


@pytest.fixture(scope="module")
def full() -> dict[NormalizedName, Locked]:
    return parse_lock(FULL)


@pytest.fixture(scope="module")
def runtime() -> dict[NormalizedName, Locked]:
    return parse_lock(RUNTIME)


def test_every_locked_requirement_has_hashes(
    full: dict[NormalizedName, Locked], runtime: dict[NormalizedName, Locked]
) -> None:
    for path, lock in ((FULL, full), (RUNTIME, runtime)):
        assert lock, f"{path.name} is empty"
        missing = [e.line for e in lock.values() if e.hashes == 0]
        assert not missing, f"{path.name}: no --hash for {missing} (run `make lock`)"


def test_the_full_lock_satisfies_pyproject(full: dict[NormalizedName, Locked]) -> None:
    wanted = requirements(None) + requirements("test") + build_requirements()
    problems = unmet(wanted, full)
    assert not problems, "requirements.lock does not match pyproject.toml (run `make lock`): " + "; ".join(problems)


def test_the_runtime_lock_satisfies_pyproject_with_the_same_versions(
    full: dict[NormalizedName, Locked], runtime: dict[NormalizedName, Locked]
) -> None:
    problems = unmet(requirements(None) + build_requirements(), runtime)
    assert not problems, "requirements-runtime.lock does not match pyproject.toml (run `make lock`): " + "; ".join(
        problems
    )
    for name, entry in runtime.items():
        assert name in full, f"{name} is in requirements-runtime.lock only"
        assert entry.version == full[name].version, f"{name}: {entry.version} (runtime) != {full[name].version}"
    test_only = {canonicalize_name(r.name) for r in requirements("test")} - {
        canonicalize_name(r.name) for r in requirements(None)
    }
    assert not test_only & {"pytest", "mypy", "ruff", "playwright"} & set(runtime), "test tools in the image's lock"


def test_the_known_fixes_are_locked(full: dict[NormalizedName, Locked]) -> None:
    """The floors pyproject states for known issues hold in the lock (a transitive one included: h11)."""
    floors = {"fastapi": "0.132", "starlette": "0.49.1", "h11": "0.16", "jinja2": "3.1.6", "setuptools": "78.1.1"}
    for name, floor in floors.items():
        locked = full[canonicalize_name(name)]
        assert locked.version >= Version(floor), f"{name} {locked.version} < {floor}"


def test_the_parser_refuses_what_a_lock_must_not_have(tmp_path: Path) -> None:
    good = "alpha==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via beta\n"
    (tmp_path / "ok.lock").write_text("# header\n" + good)
    assert parse_lock(tmp_path / "ok.lock")["alpha"].hashes == 1
    for bad in ("alpha>=1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n", "--index-url https://example.invalid/\n"):
        (tmp_path / "bad.lock").write_text(bad)
        with pytest.raises(AssertionError):
            parse_lock(tmp_path / "bad.lock")
    (tmp_path / "nohash.lock").write_text("alpha==1.0\n")
    assert parse_lock(tmp_path / "nohash.lock")["alpha"].hashes == 0
    assert unmet([Requirement("alpha>=2")], parse_lock(tmp_path / "ok.lock")) == ["alpha>=2: the lock has 1.0"]
    assert unmet([Requirement("gamma")], parse_lock(tmp_path / "ok.lock")) == ["gamma is not in the lock"]
