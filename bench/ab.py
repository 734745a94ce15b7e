"""Two commits side by side: interleaved runs of the same benchmark scenarios, medians and the new/old ratio.

    .venv/bin/python -m bench.ab --old REV --new REV [--rounds 5] [--only latency throughput] [--set FIELD=N ...]
    .venv/bin/python -m bench.ab --old REV --new REV --rounds 3 --only plans   # bench.plans, one timed round each

Each commit is checked out into a worktree of its own (the stack and the virtualenv are shared), and the rounds
alternate old, new, old, new, ... so a change in the machine's load falls on both sides alike. Each round is one
`python -m bench.run --only ...` of that commit's own bench code against the live stack; the comparison takes the
per-round figures (10k `add --wait` median seconds to summary; processor commands per second) and reports the
median of the rounds per side and new/old. ``--only plans`` runs that commit's `python -m bench.plans --runs 1`
instead (a warm-up and one timed round per ab round): `plan add` CLI seconds, `plan approve --wait` and
`add --wait` seconds, and their ratio. For a commit that predates the `participants` package (the shell),
a one-line shim module maps `participants.cli` onto its `processor.cli` in that worktree only (never committed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {
    "latency": ("latency", "fresh_s", "median", "10k add --wait, s to summary (lower is better)"),
    "throughput": ("throughput", "commands_per_s", None, "processor throughput, commands/s (higher is better)"),
}
# bench.plans' figures (its JSON's top-level keys), measured together by `--only plans`
PLAN_FIGURES = {
    "plan": ("plan_median_s", "10k plan add, CLI s start to exit (lower is better)"),
    "apply": ("apply_median_s", "10k plan approve --wait, s to summary (lower is better)"),
    "upload": ("upload_median_s", "10k add --wait in the same rounds, s to summary (lower is better)"),
    "apply_over_upload": ("apply_over_upload", "apply / upload in the same round (lower is better)"),
}


def say(msg: str) -> None:
    print(f"[ab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def checkout(rev: str, where: Path) -> Path:
    """A detached worktree of `rev` sharing the stack and the virtualenv of this checkout."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev], check=True)
    for name in (".venv", ".stack"):
        link = where / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    if not (where / "participants" / "cli.py").exists():
        (where / "participants").mkdir(exist_ok=True)
        (where / "participants" / "__init__.py").write_text("")
        (where / "participants" / "cli.py").write_text("from processor.cli import main  # bench shim\n")
    return where


def figure(doc: dict[str, Any], scenario: str) -> float | None:
    if scenario in PLAN_FIGURES:
        got = doc.get(PLAN_FIGURES[scenario][0])
        return float(got) if isinstance(got, int | float) else None
    name, key, sub, _label = FIGURES[scenario]
    value = doc.get("scenarios", {}).get(name, {}).get(key)
    if sub is not None and isinstance(value, dict):
        value = value.get(sub)
    return float(value) if isinstance(value, int | float) else None


def one_round(tree: Path, only: list[str], sets: list[str], out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    python = str(ROOT / ".venv" / "bin" / "python")
    if only == list(PLAN_FIGURES):
        argv = [python, "-m", "bench.plans", "--runs", "1", "--out", str(out)]
    else:
        argv = [python, "-m", "bench.run", "--only", *only, "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"bench.run in {tree} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--old", required=True, help="the baseline commit")
    parser.add_argument("--new", default="HEAD", help="the commit measured against it (default HEAD)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="+", default=["latency", "throughput"], choices=[*sorted(FIGURES), "plans"])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=N", help="passed to bench.run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ab.json")
    args = parser.parse_args(argv)
    if "plans" in args.only:
        if args.only != ["plans"]:
            parser.error("--only plans is measured alone")
        args.only = list(PLAN_FIGURES)
    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    trees = {"old": checkout(args.old, work / "old"), "new": checkout(args.new, work / "new")}
    rounds: dict[str, list[dict[str, float | None]]] = {"old": [], "new": []}
    try:
        for k in range(args.rounds):
            for side in ("old", "new"):
                doc = one_round(trees[side], args.only, args.set, work / f"{side}-{k}.json")
                got = {s: figure(doc, s) for s in args.only}
                rounds[side].append(got)
                say(f"round {k + 1}/{args.rounds} {side}: {got}")
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    report = summarise(args.old, args.new, args.only, rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    return 0


def summarise(old: str, new: str, only: list[str], rounds: dict[str, list[dict[str, float | None]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"old": old, "new": new, "rounds": rounds, "figures": {}}
    for s in only:
        med = {}
        for side in ("old", "new"):
            values = [r[s] for r in rounds[side] if r[s] is not None]
            med[side] = statistics.median(values) if values else None
        ratio = med["new"] / med["old"] if med["old"] and med["new"] is not None else None
        label = PLAN_FIGURES[s][1] if s in PLAN_FIGURES else FIGURES[s][3]
        out["figures"][s] = {"label": label, **med, "new_over_old": ratio}
    return out


def render(report: dict[str, Any]) -> str:
    lines = [f"old {report['old']}  vs  new {report['new']}  ({len(report['rounds']['old'])} interleaved rounds)"]
    for fig in report["figures"].values():
        lines.append(f"  {fig['label']}: old {fig['old']}, new {fig['new']}, new/old {fig['new_over_old']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
