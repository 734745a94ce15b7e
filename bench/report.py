"""The targets of the issue, and the human table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.measure import PHASES, ratio


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    value: float | None
    target: float
    unit: str
    higher_is_better: bool
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    @property
    def ratio_to_target(self) -> float | None:
        """value / target: ≥ 1 is met for a floor, ≤ 1 is met for a ceiling."""
        return ratio(self.value, self.target)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "target": self.target,
            "unit": self.unit,
            "direction": ">=" if self.higher_is_better else "<=",
            "met": self.met,
            "ratio_to_target": self.ratio_to_target,
            "note": self.note,
        }


def _get(d: Mapping[str, Any], *path: str) -> Any:
    cur: Any = d
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def targets_from(results: Mapping[str, Any], quick: bool) -> list[Target]:
    tput = _get(results, "throughput", "commands_per_s")
    naive = _get(results, "naive", "commands_per_s")
    mem_1m = _get(results, "memory", "rss_mb")
    mem = mem_1m if mem_1m is not None else _get(results, "throughput", "rss_mb")
    mem_cmds = _get(results, "memory", "commands") if mem_1m is not None else _get(results, "throughput", "commands")
    return [
        Target(
            "upload_latency_median_s",
            "upload latency, 10k rows, median",
            _get(results, "latency", "fresh_s", "median"),
            3.0,
            "s",
            False,
        ),
        Target("processor_commands_per_s", "processor throughput", tput, 30_000, "cmd/s", True),
        Target("processor_vs_naive", "processor / naive processor", ratio(tput, naive), 20, "x", True),
        Target(
            "producer_rows_per_s",
            "producer, file to acknowledged publish",
            _get(results, "producer", "rows_per_s"),
            100_000,
            "rows/s",
            True,
        ),
        Target("producer_rss_mb", "producer peak RSS", _get(results, "producer", "rss_mb"), 200, "MB", False),
        Target(
            "processor_rss_mb",
            "processor peak RSS",
            mem,
            250,
            "MB",
            False,
            f"over {mem_cmds:,} commands" if mem_cmds else "",
        ),
    ]


def _n(x: Any, fmt: str = "{:,.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def render(doc: Mapping[str, Any], targets: list[Target]) -> str:
    meta, r = doc["meta"], doc["scenarios"]
    out: list[str] = []
    add = out.append
    add("")
    add(
        f"== participants bench ({meta['mode']}) {meta['started_at']}  host {meta['host']}, {meta['cpus']} CPUs, "
        f"{meta['seconds'] / 60:.1f} min"
    )
    add(f"   load average (1/5/15 min): start {meta['load_start']}, end {meta['load_end']}")
    code = meta.get("code", {})
    if code:
        add(
            f"   code measured: sha256 {code['sha256']} of {code['files']} files, "
            f"newest {code['newest']} {code['newest_mtime']}"
        )
    for name, info in meta["scenario_load"].items():
        add(f"     {name:<11} {info['s']:6.1f} s   load before {info['before'][0]:.2f}, after {info['after'][0]:.2f}")

    lat = r.get("latency")
    if lat:
        add("")
        add(f"1. Upload latency — {lat['rows']:,}-row CSV by state id, `add --wait`, processor already running")
        add(f"   {'':<44}{'median':>9}{'min':>9}{'max':>9}")
        f, o = lat["fresh_s"], lat["one_row_s"]
        add(
            f"   {'fresh batch, fresh users (' + str(f['n']) + ' runs), to summary':<44}"
            f"{_n(f['median']) + ' s':>9}{_n(f['min']):>9}{_n(f['max']):>9}"
        )
        fe = lat["fresh_exit_s"]
        add(f"   {'  … to process exit':<44}{_n(fe['median']) + ' s':>9}{_n(fe['min']):>9}{_n(fe['max']):>9}")
        pb = lat["fresh_processor_busy_s"]
        add(
            f"   {'  … of which processor busy (its batches)':<44}{_n(pb['median']) + ' s':>9}{_n(pb['min']):>9}"
            f"{_n(pb['max']):>9}"
        )
        add(
            f"   {'baseline: 1-row upload (fixed cost)':<44}{_n(o['median']) + ' s':>9}"
            f"{_n(o['min']):>9}{_n(o['max']):>9}"
        )
        add(f"   {'already enrolled (1 run)':<44}{_n(lat['already_enrolled_s']) + ' s':>9}")
        add(
            f"   ratio 10k / 1-row: {_n(lat['ratio_to_one_row'])}x; marginal cost of the rows "
            f"{_n(lat['marginal_10k_s'])} s; every row ENROLLED: {lat['all_enrolled']}, "
            f"ALREADY_ENROLLED on repeat: {lat['all_already_enrolled']}"
        )
        for r in lat.get("incomplete_runs", []):
            add(
                f"   INCOMPLETE (not timed): {r['kind']} upload {r['upload_id']} exit {r['exit_code']} "
                f"after {r['exit_s']:.1f} s"
            )

    tp, nv, ce = r.get("throughput"), r.get("naive"), r.get("ceiling")
    if tp or nv or ce:
        add("")
        add("2. Processor throughput")
        if tp:
            _processor_lines(add, tp)
        if nv:
            add(
                f"   naive processor ({nv['commands']:,} commands, 1 txn + 1 offset commit each): "
                f"{_n(nv['commands_per_s'], '{:,.0f}')} cmd/s over {_n(nv['span_s'])} s"
            )
        if ce:
            add(
                f"   database ceiling (apply_commands alone, {ce['commands']:,} in chunks of {ce['chunk']:,}): "
                f"{_n(ce['commands_per_s'], '{:,.0f}')} cmd/s ({_n(ce['seconds'])} s)"
            )
            ns = ce.get("no_seqscan")
            if ns:
                add(
                    f"   what-if, same step with SET LOCAL enable_seqscan = off: {_n(ns['commands_per_s'], '{:,.0f}')} "
                    f"cmd/s ({_n(ratio(ns['commands_per_s'], ce['commands_per_s']))}x the step as it is)"
                )
        t = _get(tp or {}, "commands_per_s")
        add(
            f"   processor / naive: {_n(ratio(t, _get(nv or {}, 'commands_per_s')), '{:,.1f}')}x   "
            f"processor / database ceiling: {_n(ratio(t, _get(ce or {}, 'commands_per_s')))}"
        )

    pr = r.get("producer")
    if pr:
        add("")
        add(f"3. Producer — {pr['rows']:,}-row CSV ({pr['file_mb']:.1f} MB), file to acknowledged publish, subprocess")
        w, o = pr["wall_s"], pr["obvious_wall_s"]
        add(
            f"   participants add:  {_n(w['median'])} s median ({w['n']} runs) = {pr['rows_per_s']:,.0f} rows/s, "
            f"peak RSS {_n(pr['rss_mb'], '{:.0f}')} MB"
        )
        add(
            f"   baseline, obvious loop (DictReader + schemaless_writer + plain Producer): {_n(o['median'])} s = "
            f"{pr['obvious_rows_per_s']:,.0f} rows/s, peak RSS {_n(pr['obvious_rss_mb'], '{:.0f}')} MB"
        )
        if pr.get("rss_profile_mb"):
            add(f"   RSS over the run (share of the run: MB): {_profile(pr['rss_profile_mb'])}")
        add(
            f"   CPU of the child: participants add {_n(_get(pr, 'cpu_s', 'median'))} s, "
            f"obvious loop {_n(_get(pr, 'obvious_cpu_s', 'median'))} s"
        )
        add(
            f"   speed-up vs obvious: {_n(pr['speedup_vs_obvious'])}x; reading + checking the file alone (in-process "
            f"floor): {pr['reader_floor_s']:.2f} s = {pr['reader_share']:.0%} of the add"
        )

    mem = r.get("memory")
    add("")
    add("4. Processor memory")
    if tp:
        idle = tp.get("idle", {})
        add(
            f"   baseline, processor with nothing to do: {_n(idle.get('rss_mb'), '{:.0f}')} MB "
            f"(wall {_n(idle.get('wall_s'))} s)"
        )
        add(f"   over {tp['commands']:,} commands: {_n(tp['rss_mb'], '{:.0f}')} MB")
    if mem and "rss_mb" in mem:
        add(f"   over {mem['commands']:,} commands: {_n(mem['rss_mb'], '{:.0f}')} MB")
        _processor_lines(add, mem)
    elif mem:
        add(f"   ({mem.get('skipped')})")
    if lat:
        add(f"   long-running processor after the latency runs: {_n(lat['processor_rss_mb'], '{:.0f}')} MB")

    add("")
    add("Targets (ratio = measured / target)")
    add(f"   {'':<42}{'measured':>17}{'target':>19}{'ratio':>8}  status")
    for t in targets:
        sign = "≥" if t.higher_is_better else "≤"
        status = "—" if t.met is None else ("met" if t.met else "MISSED")
        value = _n(t.value, "{:,.2f}" if t.unit in ("s", "x") else "{:,.0f}")
        add(
            f"   {t.label:<42}{value + ' ' + t.unit:>17}{sign + ' ' + f'{t.target:,.0f}' + ' ' + t.unit:>19}"
            f"{_n(t.ratio_to_target):>8}  {status}{'  (' + t.note + ')' if t.note else ''}"
        )
    if doc.get("failures"):
        add("")
        add(f"FAILED scenarios: {doc['failures']}")
    return "\n".join(out)


def _profile(p: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in p.items())


def _processor_lines(add: Any, run: Mapping[str, Any]) -> None:
    log = run["log"]
    add(
        f"   participants process --until-idle, {run['commands']:,} commands in {log['batches']} batches: "
        f"{_n(run['commands_per_s'], '{:,.0f}')} cmd/s over {_n(run['span_s'])} s (assigned → last batch); "
        f"wall {_n(run['wall_s'])} s = {_n(run['commands_per_s_wall'], '{:,.0f}')} cmd/s"
    )
    shares = log["phase_shares"]
    phases = ", ".join(f"{k} {log['phases_s'][k]:.2f} s ({shares[k]:.0%})" for k in PHASES)
    add(f"   per-batch phases, summed: {phases}; outside batches (consume, idle checks) {_n(run['other_s'])} s")
    add(
        f"   median batch {_n(log['batch_commands_median'], '{:,.0f}')} commands in "
        f"{_n(log['batch_seconds_median'], '{:.3f}')} s; every command ENROLLED: {run['all_enrolled']}; "
        f"peak RSS {_n(run['rss_mb'], '{:.0f}')} MB"
    )
    tr = log.get("trend") or {}
    if tr:
        add(
            f"   per busy second, first tenth of the batches {_n(tr['first_tenth_per_busy_s'], '{:,.0f}')} cmd/s, "
            f"last tenth {_n(tr['last_tenth_per_busy_s'], '{:,.0f}')} cmd/s"
        )
    if run.get("rss_profile_mb"):
        add(f"   RSS over the run (share of the run: MB): {_profile(run['rss_profile_mb'])}")
    add(
        f"   processor's own CPU {_n(run.get('cpu_s'))} s = {_n(run.get('commands_per_cpu_s'), '{:,.0f}')} commands "
        "per CPU-second (PostgreSQL's and Kafka's CPU not included)"
    )
