"""Reports from experiment folders: tables over seeds, verdicts against declared targets.

:func:`build_report` reads an experiment folder written by
:func:`pyodejl.experiments.engine.run_experiment` into a JSON-able dict;
:func:`render_markdown` turns such a dict — live, or a committed
``results/<name>.json`` — into the Markdown of REPRODUCTION.md. Every number of
the Markdown comes from the dict, so a table rendered from a committed report is
the table of record. :func:`measurement_report` gives a measurement made outside
the engine (a benchmark script) the same form, so its table is rendered the same way.
"""

from __future__ import annotations

import math
import operator
import os
import re
from pathlib import Path

import numpy as np

from pyodejl.experiments.catalogue import get_experiment
from pyodejl.experiments.declaration import Experiment, RankAgreement, Target
from pyodejl.experiments.folder import RunFolder, RunFolderError, git_commit, package_versions, utc_timestamp

__all__ = ["REPORT_FORMAT", "build_report", "measurement_report", "render_markdown", "sync_markdown"]

REPORT_FORMAT = 1


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v)),
            "values": [float(x) for x in v]}


def _value(result: dict, key: str):
    v = result.get("final", {}).get(key, result.get(key))
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


_OPS = {"<=": operator.le, ">=": operator.ge}


def _judge(target: Target | RankAgreement, rows: dict) -> dict:
    out = {"what": target.what, "compare": target.compare, "op": target.op, "threshold": target.threshold,
           "seed_figure": target.seed_figure}
    if isinstance(target, RankAgreement):
        out.update(key=target.key, other=target.other, variants=list(target.variants), sign=target.sign)
        a = [rows.get(v, {}).get(target.key) for v in target.variants]
        b = [rows.get(v, {}).get(target.other) for v in target.variants]
        if any(x is None for x in a + b):
            return {**out, "value": None, "met": None, "verdict": "not run"}
        value = _spearman([x["mean"] for x in a], [target.sign * x["mean"] for x in b])
    else:
        out.update(key=target.key, variant=target.variant, baseline=target.baseline)
        a, b = rows.get(target.variant, {}).get(target.key), rows.get(target.baseline, {}).get(target.key)
        if target.compare == "value":
            b = a
        if a is None or b is None:
            return {**out, "value": None, "met": None, "verdict": "not run"}
        ma, mb = a["mean"], b["mean"]
        value = {"ratio": lambda: ma / mb, "speedup": lambda: mb / ma, "difference": lambda: ma - mb,
                 "value": lambda: ma}[target.compare]()
    met = bool(_OPS[target.op](value, target.threshold))
    verdict = "met" if met else f"missed by {abs(value - target.threshold):.3g}"
    return {**out, "value": float(value), "met": met, "verdict": verdict}


def _spearman(x, y) -> float:
    """Spearman's rank correlation of two sequences (ties take their mean rank; 0 when one is constant)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _seed_of(folder: Path) -> int | None:
    prefix, _, n = folder.name.partition("_")
    return int(n) if prefix == "seed" and n.isdigit() else None


def build_report(out, experiment: Experiment | None = None) -> dict:
    """The report of experiment folder ``out``: per row and column the mean, std and
    values over the finished seeds, the targets' verdicts, and where the numbers came from.

    Args:
        out: the experiment folder.
        experiment: its declaration (default: the registered one it names).

    Raises:
        FileNotFoundError: ``out`` is not an experiment folder.
        pyodejl.experiments.RunFolderError: a file of it cannot be read.
    """
    out = Path(out)
    top = RunFolder(out)
    name = top.config.get("experiment")
    if not isinstance(name, str):
        raise RunFolderError(out / RunFolder.CONFIG, "names no experiment")
    exp: Experiment = get_experiment(name) if experiment is None else experiment
    if exp.name != name:
        raise ValueError(f"{out} holds experiment {name!r}, not {exp.name!r}")
    keys = list(dict.fromkeys([c.key for c in exp.columns] + [k for t in exp.targets for k in t.keys]))
    rows, seeds, unfinished, failed, loads, cores, versions, other = {}, set(), [], [], [], set(), [], [0.0, 0.0]
    run_commits = set()  # None: a run finished before results named their commit
    for variant in exp.variants:
        vdir = out / variant
        if not vdir.is_dir():
            continue
        for sdir in sorted((d for d in vdir.iterdir() if _seed_of(d) is not None), key=_seed_of):
            run = RunFolder(sdir)
            c = run.config
            if c.get("variant") != variant or c.get("seed") != _seed_of(sdir) or c.get("settings") != \
                    top.config.get("settings"):
                raise RunFolderError(sdir / RunFolder.CONFIG, f"does not belong at {variant}/{sdir.name} of this "
                                                              "experiment folder")
            result = run.result()
            if result is None:
                unfinished.append(f"{variant}/{sdir.name}")
                continue
            if result.get("failed"):
                failed.append(f"{variant}/{sdir.name}: {result['failed']}")
                continue
            seeds.add(_seed_of(sdir))
            run_commits.add(result.get("commit"))
            loads += [x for x in result.get("load", []) if isinstance(x, (int, float))]
            if isinstance(result.get("other_cpu_s"), (int, float)) and isinstance(result.get("wall_s"), (int, float)):
                other[0] += result["other_cpu_s"]
                other[1] += result["wall_s"] * (result.get("cores") or 1)
            if isinstance(result.get("cores"), int):
                cores.add(result["cores"])
            if run.versions not in versions:
                versions.append(run.versions)
            if exp.summarise is not None:
                derived = exp.summarise([r for r in run.records() if r.get("kind") == "measurement"])
                result = {**result, "final": {**result.get("final", {}), **derived}}
            for key in keys:
                v = _value(result, key)
                if v is not None:
                    rows.setdefault(variant, {}).setdefault(key, []).append(v)
    rows = {variant: {k: _stats(v) for k, v in cols.items()} for variant, cols in rows.items()}
    invocations = top.records()
    # the commits of the runs the numbers come from; invocations whose runs were deleted do not count
    commits = {c for c in run_commits if c}
    if None in run_commits or not run_commits:
        commits |= {r.get("commit") for r in invocations if r.get("commit")}
    return {
        "format": REPORT_FORMAT,
        "experiment": exp.name,
        "title": exp.title,
        "source": exp.source,
        "notes": exp.notes,
        "quick": bool(top.config.get("quick")),
        "settings": top.config.get("settings"),
        "seeds": sorted(seeds),
        "columns": [{"key": c.key, "label": c.label, "scale": c.scale, "digits": c.digits} for c in exp.columns],
        "rows": {v: rows[v] for v in exp.variants if v in rows},
        "targets": [_judge(t, rows) for t in exp.targets],
        "unfinished": unfinished,
        "failed": failed,
        "provenance": {
            "commands": [r.get("command") for r in invocations],
            "dates": [r.get("date") for r in invocations],
            "commits": sorted(commits),
            "cores": sorted(cores),
            "load": [min(loads), max(loads)] if loads else None,
            # CPU time of every other process during the runs, as a share of what the machine had
            "other_processes_share": other[0] / other[1] if other[1] else None,
            "versions": versions,
        },
    }


def measurement_report(*, name: str, title: str, source: str, columns, rows: dict, command: str,
                       loads=(), settings: dict | None = None, notes: str = "",
                       row_heading: str = "variant") -> dict:
    """The report of one measurement made outside the engine (a benchmark script), in
    :func:`build_report`'s form, so that :func:`render_markdown` and ``--sync`` render it.

    Each cell is one measured value (n = 1); there are no seeds and no targets.

    Args:
        name, title, source, notes: as an :class:`~pyodejl.experiments.declaration.Experiment`'s.
        columns: :class:`~pyodejl.experiments.declaration.Column` s, one per table column.
        rows: ``{row label: {column key: value}}``; a missing, None or non-finite value
            renders as "–".
        command: the command line that made the numbers, for the provenance line.
        loads: 1-min load averages taken during the measurement (e.g. at its start and end).
        settings: the measurement's settings, saved with it.
        row_heading: the heading of the first column (default "variant").

    Raises:
        ValueError: a row names a key that no column has.
    """
    keys = [c.key for c in columns]
    table = {}
    for row, values in rows.items():
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise ValueError(f"row {row!r} has values for {unknown}, which no column has; columns: {keys}")
        # a count (an int) renders as one: "158 HVPs", not "158.0"
        table[row] = {k: {**_stats([values[k]]), "integer": isinstance(values[k], int)}
                      for k in keys if _value(values, k) is not None}
    loads = [float(x) for x in loads]
    return {
        "format": REPORT_FORMAT,
        "experiment": name,
        "title": title,
        "source": source,
        "notes": notes,
        "quick": False,
        "settings": settings or {},
        "seeds": [],
        "row_heading": row_heading,
        "columns": [{"key": c.key, "label": c.label, "scale": c.scale, "digits": c.digits} for c in columns],
        "rows": table,
        "targets": [],
        "unfinished": [],
        "failed": [],
        "provenance": {
            "commands": [command],
            "dates": [utc_timestamp()],
            "commits": [c for c in [git_commit()] if c],
            "cores": [os.cpu_count()],
            "load": [min(loads), max(loads)] if loads else None,
            "other_processes_share": None,
            "versions": [package_versions()],
        },
    }


def row_finals(out, seed: int = 0) -> dict:
    """``{row: final measurements}`` of the finished runs of one seed of experiment folder ``out``, in
    row order (rows without a finished run of that seed are left out); what figures draw."""
    out = Path(out)
    rows = get_experiment(RunFolder(out).config["experiment"]).variants
    finals = {}
    for row in rows:
        run = out / row / f"seed_{seed}"
        result = RunFolder(run).result() if run.is_dir() else None
        if result and "final" in result:
            finals[row] = result["final"]
    return finals


def _number(x: float, digits: int) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    text = f"{x:#.{digits}g}"  # '#' keeps significant trailing zeros: 1.0, not 1
    mantissa, e, exponent = text.partition("e")
    return mantissa.rstrip(".") + e + exponent


def _cell(stats: dict | None, scale: float, digits: int) -> str:
    if stats is None:
        return "–"
    if stats.get("integer"):
        return f"{round(stats['mean'] * scale):d}"
    mean = _number(stats["mean"] * scale, digits)
    return mean if stats["n"] < 2 else f"{mean} ± {_number(stats['std'] * scale, 2)}"


def render_markdown(report: dict) -> str:
    """The Markdown of a report: a heading line, the table, the verdicts, the provenance."""
    seeds = (f" Seeds {', '.join(map(str, report['seeds']))}; mean ± std over seeds." if report["seeds"]
             else " One measurement per cell.")
    lines = [f"**{report['title']}** ({report['source']})." + seeds
             + (f" {report['notes']}" if report.get("notes") else "")]
    if report.get("quick"):
        lines[0] += " **Quick smoke run, not a result.**"
    cols = report["columns"]
    lines += ["", f"| {report.get('row_heading', 'variant')} | " + " | ".join(c["label"] for c in cols) + " |",
              "| --- |" + " --- |" * len(cols)]
    for variant, row in report["rows"].items():
        cells = [_cell(row.get(c["key"]), c["scale"], c["digits"]) for c in cols]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if report["targets"]:
        lines += ["", "| target | seed's figure | ours | verdict |", "| --- | --- | --- | --- |"]
        for t in report["targets"]:
            ours = "–" if t["value"] is None else f"{_number(t['value'], 3)} ({t['compare']}, needs {t['op']} " \
                                                    f"{_number(t['threshold'], 3)})"
            lines.append(f"| {t['what']} | {t['seed_figure'] or '–'} | {ours} | {t['verdict']} |")
    p = report["provenance"]
    load = "–" if p["load"] is None else f"{p['load'][0]:.1f}–{p['load'][1]:.1f}"
    cmds = "; ".join(f"`{c}`" for c in dict.fromkeys(p["commands"])) or "–"
    share = p.get("other_processes_share")
    other = "–" if share is None else f"{100 * share:.0f} %"
    lines += ["", f"Commands: {cmds}; commit {', '.join(p['commits']) or 'unknown'}; "
                  f"{(p['dates'][-1] or '–')[:10] if p['dates'] else '–'}; "
                  f"{', '.join(map(str, p['cores'])) or '?'} cores; other processes used {other} of the machine "
                  f"during the runs (1-min load {load} at their start and end)."]
    if report.get("failed"):
        lines.append("Failed runs, not in the table: " + "; ".join(report["failed"]) + ".")
    if report["unfinished"]:
        lines.append(f"Unfinished runs, not in the table: {', '.join(report['unfinished'])}.")
    return "\n".join(lines) + "\n"


# a marker is a line of its own, so the markers can be named in prose
_BLOCK = re.compile(r"^(?P<open><!-- pyodejl report (?P<path>\S+) -->\n)(?P<body>.*?)"
                    r"^(?P<close><!-- end of report -->)$", re.S | re.M)


def sync_markdown(text: str, root) -> str:
    """``text`` with every block ``<!-- pyodejl report PATH -->`` … ``<!-- end of report -->``
    re-rendered from the saved report ``root/PATH`` (:func:`render_markdown`).

    A document whose blocks are all current is returned unchanged, which is what
    the test of REPRODUCTION.md checks.

    Raises:
        FileNotFoundError: a block names a report that does not exist.
        pyodejl.experiments.RunFolderError: a report that is not a JSON object.
    """
    from pyodejl.experiments.folder import read_json

    def render(m):
        report = read_json(Path(root) / m["path"])
        return m["open"] + "\n" + render_markdown(report) + "\n" + m["close"]

    return _BLOCK.sub(render, text)
