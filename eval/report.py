"""``langnav report``: a leaderboard over evaluated runs, with house-clustered bootstrap CIs.

Input: run directories, each holding ``stats_{split}.json`` files (eval/schema.py). Runs
whose method name agrees (``run.method``, " (shuffled)" appended for the shuffled-instruction
control) are one row: their episodes are pooled (every seed's episodes, clustered by house
for the bootstrap) and the per-seed SR spread is shown beside the pooled CI. Against a
baseline row, ΔSR is paired on the same episode ids (each method's per-episode SR averaged
over its seeds), houses resampled, absolute first and relative second.

Output in ``out_dir`` (all written atomically): ``report.md``, ``report.html``
(self-contained: inline CSS, plots as base64 PNG; the same content as the Markdown, its
wide tables split into column groups that fit a 1,400 px screen), ``report.json`` and the
plots ``sr_spl.png``, ``sr_by_path_length.png`` and, when some evaluated run came from a
training run with a ``train_log.jsonl``, ``learning_curves.png``. Every table also gives
SR per house; an interval from fewer than :data:`MIN_HOUSES` houses carries a caveat mark,
and relative ΔSR is shown only when the baseline's SR is at least
:data:`RELATIVE_MIN_BASELINE_SR`.
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
#: an interval from fewer houses than this carries the caveat mark (the house-clustered
#: bootstrap resamples so few clusters that it understates the uncertainty)
MIN_HOUSES = 5
FEW_HOUSES_MARK = "†"
#: relative ΔSR is shown only when the baseline's SR on the paired episodes is at least this
RELATIVE_MIN_BASELINE_SR = 0.10
RELATIVE_HIDDEN_MARK = "‡"
#: HTML table groups (column titles of :func:`split_table`, a trailing space meaning a
#: prefix; the method column leads each)
HTML_COLUMN_GROUPS = (
    ("Success", ("Seeds", "Episodes", "Houses", "SR", "SPL", "NE", "OSR")),
    ("Path fidelity and length", ("nDTW", "SDTW", "SR@1m", "TL", "SR per seed")),
    ("Against the baseline, and cost", ("ΔSR vs ", "Relative ΔSR", "Training frames", "Wall time")),
)
#: plot files and their captions (Markdown and HTML)
PLOT_CAPTIONS = {
    "sr_spl.png": ("SR and SPL per method",
                   "Success rate (left) and success weighted by path length (right) of each method, "
                   "one bar per split; error bars are 95% house-clustered bootstrap intervals."),
    "sr_by_path_length.png": ("SR by path length",
                              "Success rate of each method per bin of geodesic start→goal distance d0, "
                              "one panel per split; error bars are 95% house-clustered bootstrap intervals."),
    "learning_curves.png": ("Learning curves",
                            "Training losses (and accuracy where logged) of every training run in this report "
                            "against its update count, read from the run's train_log.jsonl."),
}


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
    by_house: Dict[str, List[float]] = {}
    for _, entry in pooled:
        if entry["metrics"]["sr"] is not None:
            by_house.setdefault(entry["house"], []).append(float(entry["metrics"]["sr"]))
    return {
        "sr_by_house": {house: {"sr": float(np.mean(v)), "n": len(v)} for house, v in sorted(by_house.items())},
        "few_houses": len(set(houses)) < MIN_HOUSES,
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
    baseline_sr = float(np.mean(b))
    return {"delta_sr": delta, "lo": lo, "hi": hi, "relative": relative, "relative_lo": rel_lo,
            "relative_hi": rel_hi, "num_episodes": len(common), "num_houses": len(set(houses)),
            "baseline_sr": baseline_sr, "relative_shown": baseline_sr >= RELATIVE_MIN_BASELINE_SR,
            "few_houses": len(set(houses)) < MIN_HOUSES}


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
        "training_runs": training_runs(groups),
        "notes": report_notes(results, n_boot),
    }


def find_training_dir(run: Run) -> Optional[str]:
    """The training run directory (holding ``train_log.jsonl``) an evaluated run came from:
    its checkpoint's run dir (``RUN/checkpoints/ckpt_*.pt`` or ``RUN/ckpt.pt``), else the
    directory holding the eval dir (``RUN/eval``, as ``langnav train`` writes it)."""
    candidates = []
    checkpoint = run.info.get("checkpoint")
    if checkpoint:
        folder = os.path.dirname(os.path.abspath(checkpoint))
        candidates += [os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder]
    candidates += [os.path.dirname(os.path.abspath(run.run_dir)), os.path.abspath(run.run_dir)]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "train_log.jsonl")):
            return candidate
    return None


#: train_log.jsonl columns that are counters, not curves
LOG_COUNTERS = ("update", "training_frames", "samples", "epoch", "iteration", "wall_s", "time_s")


def read_training_log(path: str) -> List[Dict[str, Any]]:
    """The rows of a ``train_log.jsonl`` (a line a kill tore is skipped)."""
    from agent.io_utils import read_jsonl_repaired

    return [row for row in read_jsonl_repaired(path, what="training log") if isinstance(row, dict)]


def training_runs(groups: Mapping[str, Sequence[Run]]) -> List[Dict[str, Any]]:
    """One entry per training run behind the report's rows (each once): its log's curves
    ``{key: [[update, value], ...]}`` of every numeric column that is not a counter."""
    entries: List[Dict[str, Any]] = []
    seen = set()
    for name, members in groups.items():
        for member in members:
            train_dir = find_training_dir(member)
            if train_dir is None or train_dir in seen:
                continue
            seen.add(train_dir)
            log_path = os.path.join(train_dir, "train_log.jsonl")
            rows = read_training_log(log_path)
            curves: Dict[str, List[List[float]]] = {}
            for index, row in enumerate(rows):
                x = row.get("update", index + 1)
                for key, value in row.items():
                    if key in LOG_COUNTERS or isinstance(value, bool) or not isinstance(value, (int, float)):
                        continue
                    if np.isfinite(value) and isinstance(x, (int, float)):
                        curves.setdefault(key, []).append([float(x), float(value)])
            entries.append({"method": name, "seed": member.seed, "train_dir": train_dir, "log": log_path,
                            "num_rows": len(rows), "curves": curves})
    return entries


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
        f"{FEW_HOUSES_MARK} marks an interval (or ΔSR) computed from fewer than {MIN_HOUSES} houses: the "
        "house-clustered bootstrap then resamples so few clusters that the interval understates the "
        "uncertainty (with 1–2 houses it can collapse to a point). Read such intervals as indicative only.",
        f"{RELATIVE_HIDDEN_MARK} Relative ΔSR is shown only when the baseline's SR on the paired episodes is at "
        f"least {RELATIVE_MIN_BASELINE_SR:.2f}: below that a handful of successes changes the ratio by "
        "hundreds of percent, so only the absolute ΔSR is meaningful (report.json keeps the value).",
    ]
    for split, rows in results.items():
        counts = ", ".join(f"{row['method']}: {row['num_unique_episodes']} episodes × {row['num_seeds']} seed(s) "
                           f"in {row['num_houses']} houses" for row in rows)
        notes.append(f"{split}: {counts}.")
    return notes


# ----------------------------------------------------------------------------- formatting

MISSING = "—"


def format_interval(interval: Optional[Mapping[str, Any]], few_houses: bool = False) -> str:
    """``0.42 [0.35, 0.49]`` (mean [lo, hi]), or — when the metric is unavailable; with
    ``few_houses`` the caveat mark follows."""
    if interval is None:
        return MISSING
    mark = f" {FEW_HOUSES_MARK}" if few_houses else ""
    return f"{interval['mean']:.2f} [{interval['lo']:.2f}, {interval['hi']:.2f}]{mark}"


def format_delta(comparison: Optional[Mapping[str, Any]]) -> str:
    if comparison is None:
        return MISSING
    mark = f" {FEW_HOUSES_MARK}" if comparison.get("few_houses") else ""
    return f"{comparison['delta_sr']:+.2f} [{comparison['lo']:+.2f}, {comparison['hi']:+.2f}]{mark}"


def format_relative(comparison: Optional[Mapping[str, Any]]) -> str:
    if comparison is not None and not comparison.get("relative_shown", True):
        return f"n/a {RELATIVE_HIDDEN_MARK} (baseline SR {comparison['baseline_sr']:.2f})"
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
        cells += [format_interval(row["metrics"][key], row.get("few_houses", False)) for key, _, _ in TABLE_COLUMNS]
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


def length_table(report: Mapping[str, Any], split: str) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of SR per geodesic start→goal distance bin."""
    rows = [[row["method"]] + [f"{format_interval(b['sr'], row.get('few_houses', False))} (n={b['num_episodes']})"
                               for b in row["sr_by_path_length"]] for row in report["results"][split]]
    return ["Method"] + list(PATH_LENGTH_LABELS), rows


def house_table(report: Mapping[str, Any], split: str) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of SR per house: one row per house, one column per method, each cell
    ``SR (n)`` with n the episodes × seeds of that house."""
    rows_in = report["results"][split]
    houses = sorted({house for row in rows_in for house in row.get("sr_by_house", {})})
    rows = []
    for house in houses:
        cells = [house]
        for row in rows_in:
            value = row.get("sr_by_house", {}).get(house)
            cells.append(MISSING if value is None else f"{value['sr']:.2f} ({value['n']})")
        rows.append(cells)
    return ["House"] + [row["method"] for row in rows_in], rows


def run_lines(report: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(method, provenance text) of every evaluated run, notes included."""
    lines = []
    for block in report["methods"]:
        for run in block["runs"]:
            text = (f"{run['run_dir']} (agent {run['agent']}, seed {run['seed']}, {run['instructions']} "
                    f"instructions, {run['backend']}, data {run['data_dir']}, checkpoint {run['checkpoint']}, "
                    f"splits {', '.join(run['splits'])})")
            if run.get("notes"):
                text += f"; notes: {run['notes']}"
            lines.append((block["method"], text))
    return lines


def _plot_names(report: Mapping[str, Any]) -> List[str]:
    return [name for name in report.get("files", {}).get("plots", PLOT_FILES)]


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: one table per split, SR by path length and per house, runs, plots, notes."""
    lines = ["# langnav report", "", f"Created {report['created']}."]
    if report["baseline"] is not None:
        lines.append(f"Baseline for paired comparisons: **{report['baseline']}**.")

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
        return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                + ["| " + " | ".join(cells) + " |" for cells in rows])

    for split in report["splits"]:
        header, rows = split_table(report, split)
        lines += ["", f"## {split}", ""] + table(header, rows)
        lines += ["", f"SR by geodesic start→goal distance ({split}):", ""] + table(*length_table(report, split))
        lines += ["", f"SR per house ({split}; SR (episodes × seeds)):", ""] + table(*house_table(report, split))
    for split in report["missing_splits"]:
        lines += ["", f"No run has stats for {split}."]
    lines += ["", "## Runs", ""]
    lines += [f"- {method}: `{text}`" for method, text in run_lines(report)]
    for entry in report.get("training_runs", []):
        lines.append(f"- training log of {entry['method']} (seed {entry['seed']}): `{entry['log']}` "
                     f"({entry['num_rows']} rows)")
    lines += ["", "## Plots"]
    for name in _plot_names(report):
        title, caption = PLOT_CAPTIONS.get(name, (name, ""))
        lines += ["", f"![{title}]({name})", "", f"*{title}.* {caption}"]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1.5em; max-width: 1320px; color: #222; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; } h3 { margin-bottom: 0.3em; font-size: 1.02em; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
th:first-child { background: #f0f0f0; }
tr.baseline td { background: #fff8e0; }
figure { margin: 1em 0 2em; } figcaption { color: #444; font-size: 0.92em; max-width: 70em; }
img { max-width: 100%; height: auto; }
code { overflow-wrap: anywhere; }
li { margin: 0.2em 0; } .caveat { color: #6a4a00; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], baseline_rows: Sequence[bool]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    row_open = {True: '<tr class="baseline">', False: "<tr>"}
    body = "".join(row_open[bool(is_baseline)] + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                   for cells, is_baseline in zip(rows, baseline_rows))
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _column_groups(header: Sequence[str]) -> List[Tuple[str, List[int]]]:
    """(group title, column indices) of :data:`HTML_COLUMN_GROUPS`; the method column (0)
    leads every group and each column appears in exactly one group."""
    groups = []
    used = {0}
    for title, prefixes in HTML_COLUMN_GROUPS:
        columns = [i for p in prefixes for i, name in enumerate(header) if i not in used
                   and (name == p or (p.endswith(" ") and name.startswith(p)))]
        used.update(columns)
        if columns:
            groups.append((title, [0] + columns))
    rest = [i for i in range(len(header)) if i not in used]
    if rest:
        groups.append(("Other", [0] + rest))
    return groups


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """report.html: self-contained (inline CSS, PNG plots embedded as base64), everything
    report.md has; wide tables split into column groups (the method column first in each,
    and sticky) so that they fit a laptop screen."""
    esc = html.escape
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>langnav report</title><style>{HTML_STYLE}</style></head><body>",
             "<h1>langnav report</h1>", f"<p>Created {esc(report['created'])}."]
    if report["baseline"] is not None:
        parts.append(f" Baseline for paired comparisons: <b>{esc(report['baseline'])}</b>.")
    parts.append("</p>")
    has_few = any(row.get("few_houses") or (row.get("vs_baseline") or {}).get("few_houses")
                  for rows in report["results"].values() for row in rows)
    if has_few:
        parts.append(f'<p class="caveat">{FEW_HOUSES_MARK} Some intervals come from fewer than {MIN_HOUSES} '
                     "houses and understate the uncertainty; see the notes.</p>")
    for split in report["splits"]:
        header, rows = split_table(report, split)
        flags = [row["is_baseline"] for row in report["results"][split]]
        parts.append(f'<h2 id="split-{esc(split)}">{esc(split)}</h2>')
        for title, columns in _column_groups(header):
            parts += [f"<h3>{esc(split)}: {esc(title)}</h3>",
                      _html_table([header[i] for i in columns], [[r[i] for i in columns] for r in rows], flags)]
        parts += [f"<h3>{esc(split)}: SR by geodesic start→goal distance</h3>",
                  _html_table(*length_table(report, split), flags)]
        house_header, house_rows = house_table(report, split)
        parts += [f"<h3>{esc(split)}: SR per house (SR (episodes × seeds))</h3>",
                  _html_table(house_header, house_rows, [False] * len(house_rows))]
    for split in report["missing_splits"]:
        parts.append(f"<p>No run has stats for {esc(split)}.</p>")
    parts.append('<h2 id="plots">Plots</h2>')
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        title, caption = PLOT_CAPTIONS.get(name, (name, ""))
        parts.append(f'<figure><h3>{esc(title)}</h3><img alt="{esc(title)}" src="data:image/png;base64,{encoded}">'
                     f"<figcaption>{esc(caption)} ({esc(name)})</figcaption></figure>")
    parts.append('<h2 id="runs">Runs</h2><ul>')
    parts += [f"<li>{esc(method)}: <code>{esc(text)}</code></li>" for method, text in run_lines(report)]
    parts += [f"<li>training log of {esc(entry['method'])} (seed {esc(str(entry['seed']))}): "
              f"<code>{esc(entry['log'])}</code> ({entry['num_rows']} rows)</li>"
              for entry in report.get("training_runs", [])]
    parts.append("</ul>")
    parts.append('<h2 id="notes">Notes</h2><ul>' + "".join(f"<li>{esc(n)}</li>" for n in report["notes"]) + "</ul>")
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


def plot_learning_curves(report: Mapping[str, Any]) -> Optional[bytes]:
    """PNG: one panel per training run, every logged loss (log scale) against updates, and
    accuracy-like columns in [0, 1] on a second axis; None when no run has a training log."""
    from matplotlib.figure import Figure

    entries = [entry for entry in report.get("training_runs", []) if entry["curves"]]
    if not entries:
        return None
    columns = min(3, len(entries))
    rows = -(-len(entries) // columns)
    figure = Figure(figsize=(5.2 * columns, 3.6 * rows))
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, entry in zip(panels, entries):
        losses = {k: v for k, v in entry["curves"].items() if "loss" in k}
        others = {k: v for k, v in entry["curves"].items() if k not in losses
                  and all(0.0 <= y <= 1.0 for _, y in v)}
        for key, points in sorted(losses.items()):
            xy = np.asarray(points)
            axes.plot(xy[:, 0], xy[:, 1], lw=1.2, label=key)
        if losses and all(y > 0 for v in losses.values() for _, y in v):
            axes.set_yscale("log")
        axes.set_xlabel("update")
        axes.set_ylabel("loss")
        if others:
            twin = axes.twinx()
            for key, points in sorted(others.items()):
                xy = np.asarray(points)
                twin.plot(xy[:, 0], xy[:, 1], lw=1.2, ls="--", color="black", label=key)
            twin.set_ylim(0.0, 1.0)
            twin.set_ylabel(", ".join(sorted(others)), fontsize="small")
            twin.legend(fontsize="x-small", loc="lower right")
        if losses:
            axes.legend(fontsize="x-small", loc="upper right")
        axes.set_title(f"{entry['method']} (seed {entry['seed']})", fontsize="medium")
    for axes in panels[len(entries):]:
        axes.set_axis_off()
    figure.tight_layout()
    return _figure_png(figure)


# ----------------------------------------------------------------------------- entry points

def build_report(run_dirs: List[str], out_dir: str, baseline: Optional[str] = None,
                 splits: Sequence[str] = DEFAULT_SPLITS, n_boot: int = 2000) -> Dict[str, Any]:
    """Compute the report over ``run_dirs`` and write report.{md,html,json} and plots to ``out_dir``."""
    report = compute_report(run_dirs, baseline=baseline, splits=splits, n_boot=n_boot)
    images = {"sr_spl.png": plot_sr_spl(report), "sr_by_path_length.png": plot_sr_by_path_length(report)}
    curves = plot_learning_curves(report)
    if curves is not None:
        images["learning_curves.png"] = curves
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
