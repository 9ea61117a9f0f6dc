"""``langnav report``: a leaderboard over evaluated runs, with house-clustered bootstrap CIs.

Input: run directories, each holding ``stats_{split}.json`` files (eval/schema.py). Runs
whose method name agrees (``run.method``, " (shuffled)" appended for the shuffled-instruction
control) are one row: their episodes are pooled (every seed's episodes, clustered by house
for the bootstrap) and the per-seed SR spread is shown beside the pooled CI. Against a
baseline row, ΔSR is paired on the same episode ids (each method's per-episode SR averaged
over its seeds), houses resampled, absolute first and relative second.

Output in ``out_dir`` (all written atomically): ``report.md``, ``report.html``
(self-contained: inline CSS, plots as base64 PNG), ``report.json`` and the plots
``sr_spl.png`` and ``sr_by_path_length.png``.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from eval.schema import StatsFileError, load_stats, stats_filename, write_bytes_atomic, write_text_atomic
from eval.statistics import bootstrap_ci, paired_delta_ci, paired_relative_ci, seed_spread

REPORT_SCHEMA = "langnav.report/1"
DEFAULT_SPLITS = ("val_seen", "val_unseen")
#: (metric key, column title, unit) of the split tables, in leaderboard order
TABLE_COLUMNS = (("tl", "TL", "m"), ("ne", "NE", "m"), ("osr", "OSR", ""), ("sr", "SR", ""),
                 ("sr_1m", "SR@1m", ""), ("spl", "SPL", ""), ("ndtw", "nDTW", ""), ("sdtw", "SDTW", ""))
#: also summarised in report.json (not in the tables)
EXTRA_JSON_METRICS = ("cls", "steps")
PATH_LENGTH_EDGES_M = (8.0, 12.0, 16.0)
PATH_LENGTH_LABELS = ("<8 m", "8–12 m", "12–16 m", "≥16 m")
SHUFFLED_SUFFIX = " (shuffled)"
PLOT_FILES = ("sr_spl.png", "sr_by_path_length.png")


class ReportError(ValueError):
    """The runs given to ``langnav report`` cannot be combined into one report."""


@dataclass
class Run:
    """One run directory: its row name, seed and stats per split."""

    run_dir: str
    method: str
    seed: Optional[int]
    info: Dict[str, Any]
    agent: str
    stats_by_split: Dict[str, Dict[str, Any]] = field(default_factory=dict)


def method_name(stats: Mapping[str, Any]) -> str:
    """Row name: run.method (or the agent name), + " (shuffled)" for the shuffled control."""
    name = stats["run"].get("method") or stats["agent"]
    if stats["run"].get("instructions") == "shuffled" and not name.endswith(SHUFFLED_SUFFIX):
        name += SHUFFLED_SUFFIX
    return name


def load_run(run_dir: str, splits: Sequence[str]) -> Run:
    """Read the stats files of ``run_dir`` for ``splits``; the run block must agree across splits."""
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir}: run directory not found")
    run: Optional[Run] = None
    for split in splits:
        path = os.path.join(run_dir, stats_filename(split))
        if not os.path.exists(path):
            continue
        stats = load_stats(path)
        if stats["split"] != split:
            raise ReportError(f"{path}: file is named for {split!r} but its split is {stats['split']!r}")
        if run is None:
            run = Run(run_dir=run_dir, method=method_name(stats), seed=stats["run"]["seed"],
                      info=dict(stats["run"]), agent=stats["agent"])
        elif method_name(stats) != run.method or stats["run"]["seed"] != run.seed:
            raise ReportError(f"{path}: method/seed ({method_name(stats)!r}, {stats['run']['seed']}) differ from "
                              f"the run's other splits ({run.method!r}, {run.seed})")
        run.stats_by_split[split] = stats
    if run is None:
        expected = ", ".join(stats_filename(split) for split in splits)
        raise ReportError(f"{run_dir}: no stats file for any requested split (looked for {expected})")
    return run


def group_by_method(runs: Sequence[Run]) -> Dict[str, List[Run]]:
    """Rows in first-seen order; the runs of one row must have distinct seeds."""
    groups: Dict[str, List[Run]] = {}
    for run in runs:
        groups.setdefault(run.method, []).append(run)
    for name, members in groups.items():
        seeds = [member.seed for member in members]
        if len(members) > 1 and (None in seeds or len(set(seeds)) != len(seeds)):
            dirs = ", ".join(f"{member.run_dir} (seed {member.seed})" for member in members)
            raise ReportError(f"method {name!r}: runs to pool need distinct, known seeds: {dirs}")
    return groups


def _pooled_episodes(members: Sequence[Run], split: str) -> List[Tuple[str, Dict[str, Any]]]:
    """(episode_id, entry) over every seed's stats for ``split`` (an id repeats once per seed)."""
    pooled = []
    for member in members:
        stats = member.stats_by_split.get(split)
        if stats is not None:
            pooled.extend(stats["episodes"].items())
    return pooled


def _interval(values: List[Optional[float]], houses: List[str], n_boot: int) -> Optional[Dict[str, Any]]:
    """Clustered-bootstrap mean and CI over the non-None values, or None when all are None."""
    kept = [(value, house) for value, house in zip(values, houses) if value is not None]
    if not kept:
        return None
    mean, lo, hi = bootstrap_ci([v for v, _ in kept], [h for _, h in kept], n_boot=n_boot)
    return {"mean": mean, "lo": lo, "hi": hi, "n": len(kept)}


def _path_length_bin(geodesic_start: float) -> int:
    return int(np.searchsorted(PATH_LENGTH_EDGES_M, geodesic_start, side="right"))


def summarise_split(members: Sequence[Run], split: str, n_boot: int) -> Optional[Dict[str, Any]]:
    """One table row for one split: pooled metric CIs, per-seed SR spread, SR by path length."""
    pooled = _pooled_episodes(members, split)
    if not pooled:
        return None
    houses = [entry["house"] for _, entry in pooled]
    metrics = {key: _interval([entry["metrics"][key] for _, entry in pooled], houses, n_boot)
               for key in [column[0] for column in TABLE_COLUMNS] + list(EXTRA_JSON_METRICS)}
    per_seed = [(member.seed, member.stats_by_split[split]) for member in members if split in member.stats_by_split]
    per_seed_sr = [mean for mean in (_mean_known([e["metrics"]["sr"] for e in stats["episodes"].values()])
                                     for _, stats in per_seed) if mean is not None]
    by_length = []
    # episodes without a goal (withheld) have no d0 and no SR: bin -1 keeps them out
    bins = [-1 if entry["geodesic_start"] is None else _path_length_bin(entry["geodesic_start"]) for _, entry in pooled]
    for bin_index, label in enumerate(PATH_LENGTH_LABELS):
        chosen = [i for i, b in enumerate(bins) if b == bin_index]
        interval = _interval([pooled[i][1]["metrics"]["sr"] for i in chosen], [houses[i] for i in chosen], n_boot)
        by_length.append({"bin": label, "num_episodes": len(chosen), "sr": interval})
    return {
        "num_seeds": len(per_seed), "seeds": [seed for seed, _ in per_seed],
        "num_episodes": len(pooled), "num_unique_episodes": len({episode_id for episode_id, _ in pooled}),
        "num_houses": len(set(houses)), "metrics": metrics,
        "sr_per_seed": dict(seed_spread(per_seed_sr), values=per_seed_sr) if per_seed_sr else None,
        "sr_by_path_length": by_length,
    }


def _per_episode_sr(members: Sequence[Run], split: str) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Per-episode SR averaged over the seeds that evaluated it, and each episode's house."""
    totals: Dict[str, List[float]] = {}
    houses: Dict[str, str] = {}
    for episode_id, entry in _pooled_episodes(members, split):
        if entry["metrics"]["sr"] is None:  # goal withheld: nothing to compare
            continue
        totals.setdefault(episode_id, []).append(float(entry["metrics"]["sr"]))
        if houses.setdefault(episode_id, entry["house"]) != entry["house"]:
            raise ReportError(f"{split}: episode {episode_id!r} is in house {houses[episode_id]!r} in one run "
                              f"and {entry['house']!r} in another (different datasets?)")
    return {episode_id: float(np.mean(v)) for episode_id, v in totals.items()}, houses


def compare_to_baseline(members: Sequence[Run], baseline: Sequence[Run], split: str,
                        n_boot: int) -> Optional[Dict[str, Any]]:
    """Paired ΔSR = SR(method) − SR(baseline) on the episodes both evaluated, houses resampled."""
    sr_method, houses_method = _per_episode_sr(members, split)
    sr_baseline, houses_baseline = _per_episode_sr(baseline, split)
    common = sorted(set(sr_method) & set(sr_baseline))
    if not common:
        return None
    for episode_id in common:
        if houses_method[episode_id] != houses_baseline[episode_id]:
            raise ReportError(f"{split}: episode {episode_id!r} is in house {houses_method[episode_id]!r} for the "
                              f"method but {houses_baseline[episode_id]!r} for the baseline")
    a = [sr_method[e] for e in common]
    b = [sr_baseline[e] for e in common]
    houses = [houses_method[e] for e in common]
    delta, lo, hi = paired_delta_ci(a, b, houses, n_boot=n_boot)
    relative, rel_lo, rel_hi = paired_relative_ci(a, b, houses, n_boot=n_boot)
    return {"delta_sr": delta, "lo": lo, "hi": hi, "relative": relative, "relative_lo": rel_lo,
            "relative_hi": rel_hi, "num_episodes": len(common), "num_houses": len(set(houses))}


def _mean_known(values: Sequence[Optional[float]]) -> Optional[float]:
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _method_block(name: str, members: Sequence[Run]) -> Dict[str, Any]:
    """Per-row facts that do not depend on the split: runs, training frames, wall time."""
    return {
        "method": name,
        "runs": [{"run_dir": m.run_dir, "agent": m.agent, "seed": m.seed, "instructions": m.info["instructions"],
                  "training_frames": m.info["training_frames"], "wall_time_s": m.info["wall_time_s"],
                  "backend": m.info["backend"], "data_dir": m.info["data_dir"], "checkpoint": m.info["checkpoint"],
                  "notes": m.info["notes"], "splits": sorted(m.stats_by_split)} for m in members],
        # mean per seed over the runs that state it (None when none does) and how many do
        "training_frames": _mean_known([m.info["training_frames"] for m in members]),
        "training_frames_known": sum(m.info["training_frames"] is not None for m in members),
        "wall_time_s": _mean_known([m.info["wall_time_s"] for m in members]),
        "wall_time_known": sum(m.info["wall_time_s"] is not None for m in members),
        "num_runs": len(members),
    }


def compute_report(run_dirs: Sequence[str], baseline: Optional[str] = None,
                   splits: Sequence[str] = DEFAULT_SPLITS, n_boot: int = 2000) -> Dict[str, Any]:
    """All numbers of the report (the content of report.json), without writing anything."""
    if not run_dirs:
        raise ReportError("no run directories given")
    groups = group_by_method([load_run(run_dir, splits) for run_dir in run_dirs])
    if baseline is not None and baseline not in groups:
        raise ReportError(f"baseline {baseline!r} is not among the methods {list(groups)}")
    present = [s for s in splits if any(s in m.stats_by_split for members in groups.values() for m in members)]
    results: Dict[str, List[Dict[str, Any]]] = {}
    for split in present:
        rows = []
        for name, members in groups.items():
            row = summarise_split(members, split, n_boot)
            if row is None:
                continue
            row["method"] = name
            row["is_baseline"] = name == baseline
            row["vs_baseline"] = (compare_to_baseline(members, groups[baseline], split, n_boot)
                                  if baseline is not None and name != baseline else None)
            rows.append(row)
        results[split] = rows
    return {
        "schema": REPORT_SCHEMA,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "splits": list(present), "missing_splits": [s for s in splits if s not in present],
        "baseline": baseline, "methods": [_method_block(n, m) for n, m in groups.items()],
        "results": results,
        "bootstrap": {"n_boot": n_boot, "alpha": 0.05, "cluster": "house", "interval": "percentile"},
        "notes": report_notes(results, n_boot),
    }


def report_notes(results: Mapping[str, List[Dict[str, Any]]], n_boot: int) -> List[str]:
    """The methodological notes every report carries, with the episode counts per split."""
    notes = [
        "nDTW and SDTW use exact DTW over 3-D Euclidean point distances against the dense ground-truth "
        "locations; VLN-CE uses fastdtw by default (an approximation that can only lower nDTW).",
        f"95% confidence intervals: percentile bootstrap ({n_boot} resamples) clustered by house — houses are "
        "resampled with all their episodes (all seeds of a method share a house's cluster).",
        "Runs of one method with different training seeds are pooled into one row; 'SR per seed' gives "
        "the mean ± sd of the per-seed success rates.",
        "ΔSR vs the baseline is paired on the episode ids both evaluated (per-episode SR averaged over seeds); "
        "absolute difference first, relative change second.",
        "SR = STOP called within 3 m (geodesic); SR@1m = STOP called within 1 m; TL sums Euclidean steps.",
        "Training frames and wall time: mean per run over the runs of a row that state them.",
        "SR by path length bins episodes by the geodesic start→goal distance d0; n counts episodes × seeds.",
    ]
    for split, rows in results.items():
        counts = ", ".join(f"{row['method']}: {row['num_unique_episodes']} episodes × {row['num_seeds']} seed(s) "
                           f"in {row['num_houses']} houses" for row in rows)
        notes.append(f"{split}: {counts}.")
    return notes


# ----------------------------------------------------------------------------- formatting

MISSING = "—"


def format_interval(interval: Optional[Mapping[str, Any]]) -> str:
    """``0.42 [0.35, 0.49]`` (mean [lo, hi]), or — when the metric is unavailable."""
    if interval is None:
        return MISSING
    return f"{interval['mean']:.2f} [{interval['lo']:.2f}, {interval['hi']:.2f}]"


def format_delta(comparison: Optional[Mapping[str, Any]]) -> str:
    if comparison is None:
        return MISSING
    return f"{comparison['delta_sr']:+.2f} [{comparison['lo']:+.2f}, {comparison['hi']:+.2f}]"


def format_relative(comparison: Optional[Mapping[str, Any]]) -> str:
    if comparison is None or comparison["relative"] is None:
        return MISSING
    text = f"{100 * comparison['relative']:+.1f}%"
    if comparison["relative_lo"] is not None:
        text += f" [{100 * comparison['relative_lo']:+.1f}%, {100 * comparison['relative_hi']:+.1f}%]"
    return text


def format_seed_spread(spread: Optional[Mapping[str, Any]]) -> str:
    if spread is None:
        return MISSING
    if spread["sd"] is None:
        return f"{spread['mean']:.2f} (1 seed)"
    return f"{spread['mean']:.2f} ± {spread['sd']:.2f} ({spread['n']} seeds)"


def format_frames(frames: Optional[float]) -> str:
    if frames is None:
        return MISSING
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if frames >= scale:
            return f"{frames / scale:.3g}{suffix}"
    return f"{frames:.0f}"


def format_wall_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return MISSING
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def _known_suffix(known: int, block: Mapping[str, Any]) -> str:
    """`` (1/2 runs)`` when only some of a row's runs state a figure (the shown mean is theirs)."""
    return "" if known in (0, block["num_runs"]) else f" ({known}/{block['num_runs']} runs)"


def split_table(report: Mapping[str, Any], split: str) -> Tuple[List[str], List[List[str]]]:
    """(header, rows of cells) of one split's leaderboard table, shared by Markdown and HTML."""
    baseline = report["baseline"]
    header = ["Method", "Seeds", "Episodes", "Houses"] + [title for _, title, _ in TABLE_COLUMNS] + ["SR per seed"]
    if baseline is not None:
        header += [f"ΔSR vs {baseline}", "Relative ΔSR"]
    header += ["Training frames", "Wall time"]
    methods = {block["method"]: block for block in report["methods"]}
    rows = []
    for row in report["results"][split]:
        cells = [row["method"] + (" (baseline)" if row["is_baseline"] else ""), str(row["num_seeds"]),
                 str(row["num_unique_episodes"]), str(row["num_houses"])]
        cells += [format_interval(row["metrics"][key]) for key, _, _ in TABLE_COLUMNS]
        cells.append(format_seed_spread(row["sr_per_seed"]))
        if baseline is not None:
            comparison = row["vs_baseline"]
            cells += ["baseline" if row["is_baseline"] else format_delta(comparison),
                      "baseline" if row["is_baseline"] else format_relative(comparison)]
        block = methods[row["method"]]
        cells += [format_frames(block["training_frames"]) + _known_suffix(block["training_frames_known"], block),
                  format_wall_time(block["wall_time_s"]) + _known_suffix(block["wall_time_known"], block)]
        rows.append(cells)
    return header, rows


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: one table per split, SR by path length, runs, notes."""
    lines = ["# langnav report", "", f"Created {report['created']}."]
    if report["baseline"] is not None:
        lines.append(f"Baseline for paired comparisons: **{report['baseline']}**.")
    for split in report["splits"]:
        header, rows = split_table(report, split)
        lines += ["", f"## {split}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        lines += ["", f"SR by geodesic start→goal distance ({split}):", "",
                  "| Method | " + " | ".join(PATH_LENGTH_LABELS) + " |", "|" + "---|" * (1 + len(PATH_LENGTH_LABELS))]
        for row in report["results"][split]:
            cells = [f"{format_interval(b['sr'])} (n={b['num_episodes']})" for b in row["sr_by_path_length"]]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    for split in report["missing_splits"]:
        lines += ["", f"No run has stats for {split}."]
    lines += ["", "## Runs", ""]
    for block in report["methods"]:
        for run in block["runs"]:
            lines.append(f"- {block['method']}: `{run['run_dir']}` (agent {run['agent']}, seed {run['seed']}, "
                         f"{run['instructions']} instructions, {run['backend']}, checkpoint {run['checkpoint']})")
    lines += ["", "![SR and SPL](sr_spl.png)", "", "![SR by path length](sr_by_path_length.png)", "", "## Notes", ""]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.baseline td { background: #fff8e0; } img { max-width: 100%; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], baseline_rows: Sequence[bool]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    row_open = {True: '<tr class="baseline">', False: "<tr>"}
    body = "".join(row_open[bool(is_baseline)] + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                   for cells, is_baseline in zip(rows, baseline_rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """report.html: self-contained (inline CSS, PNG plots embedded as base64)."""
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>langnav report</title>",
             f"<style>{HTML_STYLE}</style></head><body><h1>langnav report</h1>",
             f"<p>Created {html.escape(report['created'])}."]
    if report["baseline"] is not None:
        parts.append(f" Baseline for paired comparisons: <b>{html.escape(report['baseline'])}</b>.")
    parts.append("</p>")
    for split in report["splits"]:
        header, rows = split_table(report, split)
        flags = [row["is_baseline"] for row in report["results"][split]]
        parts += [f"<h2>{html.escape(split)}</h2>", _html_table(header, rows, flags)]
        length_rows = [[row["method"]] + [f"{format_interval(b['sr'])} (n={b['num_episodes']})"
                                          for b in row["sr_by_path_length"]] for row in report["results"][split]]
        parts += [f"<p>SR by geodesic start→goal distance ({html.escape(split)}):</p>",
                  _html_table(["Method"] + list(PATH_LENGTH_LABELS), length_rows, flags)]
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(f"<h2>{html.escape(name)}</h2><img alt=\"{html.escape(name)}\" src=\"data:image/png;base64,{encoded}\">")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append("</body></html>")
    return "".join(parts)


# ----------------------------------------------------------------------------- plots

def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _grouped_bars(axes: Any, groups: Sequence[str], series: Sequence[Tuple[str, List[Optional[Mapping[str, Any]]]]],
                  title: str, legend: bool) -> None:
    """Bars for each series within each group, with CI error bars; missing values leave a gap."""
    width = 0.8 / max(1, len(series))
    positions = np.arange(len(groups))
    for index, (label, intervals) in enumerate(series):
        means = [np.nan if i is None else i["mean"] for i in intervals]
        lower = [0.0 if i is None else i["mean"] - i["lo"] for i in intervals]
        upper = [0.0 if i is None else i["hi"] - i["mean"] for i in intervals]
        axes.bar(positions + (index - (len(series) - 1) / 2) * width, means, width, yerr=[lower, upper],
                 capsize=3, label=label)
    axes.set_xticks(positions)
    axes.set_xticklabels(groups, rotation=20, ha="right")
    axes.set_ylim(0.0, 1.05)
    axes.set_title(title)
    if legend:  # outside the last panel, so it hides no bar
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_sr_spl(report: Mapping[str, Any]) -> bytes:
    """PNG: SR and SPL per method (groups) and split (bars), 95% CI error bars."""
    from matplotlib.figure import Figure  # Figure without pyplot: no global backend state (Agg)

    methods = [block["method"] for block in report["methods"]]
    figure = Figure(figsize=(max(6.0, 1.6 * len(methods)) * 2, 4.5))
    for index, (axes, key, title) in enumerate(zip(figure.subplots(1, 2), ("sr", "spl"), ("SR", "SPL"))):
        series = []
        for split in report["splits"]:
            by_method = {row["method"]: row["metrics"][key] for row in report["results"][split]}
            series.append((split, [by_method.get(method) for method in methods]))
        _grouped_bars(axes, methods, series, f"{title} (95% CI, house-clustered bootstrap)", legend=index == 1)
    return _figure_png(figure)


def plot_sr_by_path_length(report: Mapping[str, Any]) -> bytes:
    """PNG: SR per geodesic start→goal distance bin, one panel per split, bars per method."""
    from matplotlib.figure import Figure

    splits = report["splits"]
    figure = Figure(figsize=(7.0 * len(splits), 4.5))
    panels = figure.subplots(1, len(splits), squeeze=False)[0]
    for index, (axes, split) in enumerate(zip(panels, splits)):
        series = [(row["method"], [b["sr"] for b in row["sr_by_path_length"]]) for row in report["results"][split]]
        _grouped_bars(axes, list(PATH_LENGTH_LABELS), series, f"SR by geodesic start→goal distance, {split}",
                      legend=index == len(splits) - 1)
    return _figure_png(figure)


# ----------------------------------------------------------------------------- entry points

def build_report(run_dirs: List[str], out_dir: str, baseline: Optional[str] = None,
                 splits: Sequence[str] = DEFAULT_SPLITS, n_boot: int = 2000) -> Dict[str, Any]:
    """Compute the report over ``run_dirs`` and write report.{md,html,json} and plots to ``out_dir``."""
    report = compute_report(run_dirs, baseline=baseline, splits=splits, n_boot=n_boot)
    images = {"sr_spl.png": plot_sr_spl(report), "sr_by_path_length.png": plot_sr_by_path_length(report)}
    os.makedirs(out_dir, exist_ok=True)
    for name, data in images.items():
        write_bytes_atomic(os.path.join(out_dir, name), data)
    report["files"] = {"markdown": "report.md", "html": "report.html", "json": "report.json", "plots": list(images)}
    write_text_atomic(os.path.join(out_dir, "report.md"), render_markdown(report))
    write_text_atomic(os.path.join(out_dir, "report.html"), render_html(report, images))
    write_text_atomic(os.path.join(out_dir, "report.json"), json.dumps(report, indent=1, allow_nan=False))
    return report


def add_report_arguments(parser: Any) -> None:
    """Register ``langnav report`` options on an argparse (sub)parser."""
    parser.add_argument("runs", nargs="+", help="run directories holding stats_{split}.json files")
    parser.add_argument("--out", required=True, help="output directory for report.{md,html,json} and plots")
    parser.add_argument("--baseline", default=None, help="method name to compare against (paired ΔSR)")
    parser.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), help="splits to report")
    parser.add_argument("--n-boot", dest="n_boot", type=int, default=2000, help="bootstrap resamples")


def cli_report(args: Any) -> int:
    """``langnav report RUN_DIR... --out DIR [--baseline NAME]``; 0 on success, 1 on bad input."""
    import sys

    try:
        report = build_report(list(args.runs), args.out, baseline=args.baseline,
                              splits=tuple(getattr(args, "splits", None) or DEFAULT_SPLITS),
                              n_boot=int(getattr(args, "n_boot", None) or 2000))
    except (ReportError, StatsFileError) as error:
        print(f"langnav report: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {os.path.join(args.out, 'report.md')} ({len(report['methods'])} methods, "
          f"splits {', '.join(report['splits'])})")
    return 0
