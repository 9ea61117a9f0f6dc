"""Stats file schema, leaderboard predictions and the ``langnav report`` output."""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from eval.metrics import METRIC_KEYS, episode_metrics
from eval.report import (PATH_LENGTH_LABELS, TABLE_COLUMNS, ReportError, add_report_arguments, build_report,
                         cli_report)
from eval.schema import (SCHEMA, StatsFileError, aggregate, load_stats, new_run_info, new_stats,
                         predictions_from_stats, save_stats, stats_filename)

SPLITS = ("val_seen", "val_unseen")
STOP, FORWARD, LEFT = 0, 1, 2
NUM_HOUSES = 6
EPISODES_PER_HOUSE = 4


def episode_layout(split):
    """(episode_id, house, start, goal) on an open floor; starts 6-18 m from the goal."""
    rng = np.random.default_rng(0 if split == "val_seen" else 1)
    layout = []
    for house in range(NUM_HOUSES):
        for k in range(EPISODES_PER_HOUSE):
            distance = 6.0 + 12.0 * rng.random()
            angle = 2 * math.pi * rng.random()
            goal = np.array([distance * math.sin(angle), 0.0, -distance * math.cos(angle)])
            layout.append((f"{split}_{house * EPISODES_PER_HOUSE + k}", f"{split}_house_{house}", np.zeros(3), goal))
    return layout


def walk(start, target, stop, max_steps=80):
    """Turn once, then forward 0.25 m steps towards ``target``; positions (T+1), headings, actions."""
    positions, headings, actions = [start.copy()], [0.0], []
    direction = (target - start) / np.linalg.norm(target - start)
    heading = math.atan2(-direction[0], -direction[2])
    positions.append(start.copy()); headings.append(heading); actions.append(LEFT)
    steps = min(max_steps, int(np.linalg.norm(target - start) / 0.25))
    for _ in range(steps):
        positions.append(positions[-1] + 0.25 * direction); headings.append(heading); actions.append(FORWARD)
    if stop:
        positions.append(positions[-1].copy()); headings.append(heading); actions.append(STOP)
    return positions, headings, actions


def simulate_episodes(split, skill, seed):
    """Schema-valid episode entries; the agent aims at a point off the goal by (1 - skill) * 6 m."""
    rng = np.random.default_rng(seed * 100 + int(skill * 10) + (0 if split == "val_seen" else 7))
    episodes = {}
    for episode_id, house, start, goal in episode_layout(split):
        offset_angle = 2 * math.pi * rng.random()
        miss = (1.0 - skill) * 6.0 * rng.random()
        target = goal + miss * np.array([math.cos(offset_angle), 0.0, math.sin(offset_angle)])
        positions, headings, actions = walk(start, target, stop=rng.random() < 0.9)
        gt_locations = walk(start, goal, stop=False)[0][1:]
        record = {"positions": positions, "distances_to_goal": [float(np.linalg.norm(p - goal)) for p in positions],
                  "stop_called": actions[-1] == STOP, "geodesic_start": float(np.linalg.norm(goal - start)),
                  "gt_locations": gt_locations}
        episodes[episode_id] = {
            "house": house, "trajectory_id": episode_id.split("_")[-1], "metrics": episode_metrics(record),
            "trajectory": {"positions": np.asarray(positions), "headings": headings, "actions": actions},
            "geodesic_start": record["geodesic_start"]}
    return episodes


def write_run(root, name, method, seed, skill, instructions="normal", frames=None, wall=None):
    run_dir = os.path.join(str(root), name)
    run = new_run_info(method, "houses", "data/houses_test", seed=seed, instructions=instructions,
                       training_frames=frames, wall_time_s=wall, checkpoint=f"{name}/ckpt.pt")
    for split in SPLITS:
        stats = new_stats(split, f"agent_{name}", run, simulate_episodes(split, skill, seed if seed is not None else 9))
        save_stats(os.path.join(run_dir, stats_filename(split)), stats)
    return run_dir


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """2 methods x 2 seeds x 2 splits, a 2-seed baseline, a shuffled control and a method-less run."""
    root = tmp_path_factory.mktemp("runs")
    return [
        write_run(root, "bc_s0", "bc", 0, skill=0.3, frames=100_000, wall=1800.0),
        write_run(root, "bc_s1", "bc", 1, skill=0.3, frames=120_000, wall=2000.0),
        write_run(root, "airl_s0", "airl", 0, skill=0.5, frames=2_000_000, wall=7200.0),
        write_run(root, "airl_s1", "airl", 1, skill=0.55, frames=2_000_000, wall=7000.0),
        write_run(root, "full_s0", "full method", 0, skill=0.8, frames=3_000_000, wall=9000.0),
        write_run(root, "full_s1", "full method", 1, skill=0.75, frames=3_000_000, wall=9500.0),
        write_run(root, "full_shuf", "full method", 0, skill=0.2, instructions="shuffled"),
        write_run(root, "random", None, None, skill=0.0),
    ]


@pytest.fixture(scope="module")
def built(run_dirs, tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("report"))
    report = build_report(run_dirs, out_dir, baseline="bc", n_boot=500)
    return report, out_dir


EXPECTED_ROWS = ("bc", "airl", "full method", "full method (shuffled)", "agent_random")


# ----------------------------------------------------------------------------- schema

def test_stats_round_trip_and_aggregate(run_dirs):
    stats = load_stats(os.path.join(run_dirs[0], "stats_val_seen.json"))
    assert stats["schema"] == SCHEMA and stats["split"] == "val_seen" and stats["run"]["method"] == "bc"
    assert len(stats["episodes"]) == NUM_HOUSES * EPISODES_PER_HOUSE
    entry = next(iter(stats["episodes"].values()))
    assert set(entry["metrics"]) == set(METRIC_KEYS)
    assert isinstance(entry["trajectory"]["positions"][0], list)  # numpy arrays were serialised
    for key in METRIC_KEYS:
        expected = np.mean([e["metrics"][key] for e in stats["episodes"].values()])
        assert stats["aggregate"][key] == pytest.approx(expected)
    assert stats["aggregate"]["num_episodes"] == len(stats["episodes"])


def test_aggregate_ignores_none():
    base = {"tl": 1.0, "ne": 2.0, "osr": 1.0, "sr": 1.0, "sr_1m": 0.0, "spl": 0.5, "steps": 4.0}
    episodes = {"1": {"metrics": dict(base, ndtw=0.8, sdtw=0.8, cls=0.6)},
                "2": {"metrics": dict(base, sr=0.0, ndtw=None, sdtw=None, cls=None)}}
    result = aggregate(episodes)
    assert result["sr"] == 0.5 and result["ndtw"] == pytest.approx(0.8) and result["num_episodes"] == 2
    assert aggregate({"2": episodes["2"]})["cls"] is None


def test_load_stats_errors_name_the_file(tmp_path, run_dirs):
    missing = str(tmp_path / "stats_val_seen.json")
    with pytest.raises(StatsFileError, match=re.escape(missing)):
        load_stats(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(StatsFileError, match="broken.json"):
        load_stats(str(broken))
    stats = load_stats(os.path.join(run_dirs[0], "stats_val_seen.json"))
    episode_id = next(iter(stats["episodes"]))
    del stats["episodes"][episode_id]["metrics"]["spl"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(stats))
    with pytest.raises(StatsFileError, match=f"bad.json: episode '{episode_id}': metrics is missing 'spl'"):
        load_stats(str(bad))


def test_save_stats_refuses_invalid_stats_and_leaves_no_file(tmp_path, run_dirs):
    stats = load_stats(os.path.join(run_dirs[0], "stats_val_seen.json"))
    next(iter(stats["episodes"].values()))["metrics"]["ne"] = float("inf")
    target = tmp_path / "stats_val_seen.json"
    with pytest.raises(StatsFileError, match="metric 'ne' must be a finite number"):
        save_stats(str(target), stats)
    assert os.listdir(tmp_path) == []
    stats = load_stats(os.path.join(run_dirs[0], "stats_val_seen.json"))
    stats["run"]["instructions"] = "reversed"
    with pytest.raises(StatsFileError, match="run.instructions"):
        save_stats(str(target), stats)
    stats = load_stats(os.path.join(run_dirs[0], "stats_val_seen.json"))
    entry = next(iter(stats["episodes"].values()))
    entry["stop_called"] = entry["trajectory"]["actions"][-1] != STOP
    with pytest.raises(StatsFileError, match="stop_called is .* but the last action"):
        save_stats(str(target), stats)
    entry["stop_called"] = not entry["stop_called"]
    save_stats(str(target), stats)  # an agreeing stop_called is accepted
    assert load_stats(str(target))["episodes"] == stats["episodes"]


def test_predictions_follow_the_leaderboard_format(run_dirs):
    stats = load_stats(os.path.join(run_dirs[0], "stats_val_unseen.json"))
    predictions = predictions_from_stats(stats)
    assert set(predictions) == set(stats["episodes"])
    saw_stop = saw_timeout = False
    for episode_id, states in predictions.items():
        trajectory = stats["episodes"][episode_id]["trajectory"]
        assert len(states) == len(trajectory["actions"]) + 1
        assert states[0]["position"] == trajectory["positions"][0]  # start state first
        assert all(set(state) == {"position", "heading", "stop"} for state in states)
        assert not any(state["stop"] for state in states[:-1])
        called_stop = trajectory["actions"][-1] == STOP
        assert states[-1]["stop"] is called_stop
        saw_stop |= called_stop
        saw_timeout |= not called_stop
    assert saw_stop and saw_timeout
    json.dumps(predictions)  # plain JSON types


# ----------------------------------------------------------------------------- report

def test_report_has_every_row_and_column(built):
    report, out_dir = built
    markdown = open(os.path.join(out_dir, "report.md"), encoding="utf-8").read()
    for split in SPLITS:
        section = markdown.split(f"## {split}")[1].split("## ")[0]
        header_line = next(line for line in section.splitlines() if line.startswith("| Method | Seeds"))
        for _, title, _ in TABLE_COLUMNS:
            assert f"| {title} |" in header_line
        for column in ("SR per seed", "ΔSR vs bc", "Relative ΔSR", "Training frames", "Wall time"):
            assert column in header_line
        for row in EXPECTED_ROWS:
            assert re.search(rf"^\| {re.escape(row)}( \(baseline\))? \|", section, re.MULTILINE), (split, row)
        for label in PATH_LENGTH_LABELS:
            assert label in section
        table_rows = [line for line in section.splitlines() if line.startswith("| ") and "[" in line]
        assert len(re.findall(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", table_rows[0])) == len(TABLE_COLUMNS)
    assert "exact DTW" in markdown and "fastdtw" in markdown
    assert re.search(r"val_unseen: .*bc: 24 episodes × 2 seed\(s\) in 6 houses", markdown)
    assert [row["method"] for row in report["results"]["val_seen"]] == list(EXPECTED_ROWS)


def test_seeds_are_pooled_with_their_spread(built, run_dirs):
    report, _ = built
    full = next(row for row in report["results"]["val_unseen"] if row["method"] == "full method")
    per_seed = [load_stats(os.path.join(d, "stats_val_unseen.json")) for d in run_dirs[4:6]]
    pooled_sr = [e["metrics"]["sr"] for stats in per_seed for e in stats["episodes"].values()]
    assert full["num_seeds"] == 2 and full["seeds"] == [0, 1]
    assert full["num_episodes"] == 48 and full["num_unique_episodes"] == 24 and full["num_houses"] == 6
    assert full["metrics"]["sr"]["mean"] == pytest.approx(np.mean(pooled_sr))
    assert full["metrics"]["sr"]["lo"] <= full["metrics"]["sr"]["mean"] <= full["metrics"]["sr"]["hi"]
    assert full["sr_per_seed"]["values"] == pytest.approx([s["aggregate"]["sr"] for s in per_seed])
    assert full["sr_per_seed"]["sd"] == pytest.approx(np.std([s["aggregate"]["sr"] for s in per_seed], ddof=1))
    methods = {block["method"]: block for block in report["methods"]}
    assert methods["bc"]["training_frames"] == pytest.approx(110_000)
    assert methods["agent_random"]["training_frames"] is None
    counts = [b["num_episodes"] for b in full["sr_by_path_length"]]
    assert sum(counts) == 48 and all(c > 0 for c in counts)


def test_paired_delta_against_the_baseline(built, run_dirs):
    report, _ = built
    rows = {row["method"]: row for row in report["results"]["val_seen"]}
    assert rows["bc"]["is_baseline"] and rows["bc"]["vs_baseline"] is None

    def per_episode_sr(dirs):
        stats = [load_stats(os.path.join(d, "stats_val_seen.json")) for d in dirs]
        return {i: np.mean([s["episodes"][i]["metrics"]["sr"] for s in stats]) for i in stats[0]["episodes"]}

    full, bc = per_episode_sr(run_dirs[4:6]), per_episode_sr(run_dirs[0:2])
    comparison = rows["full method"]["vs_baseline"]
    assert comparison["delta_sr"] == pytest.approx(np.mean([full[i] - bc[i] for i in full]))
    assert comparison["lo"] <= comparison["delta_sr"] <= comparison["hi"]
    mean_full, mean_bc = np.mean(list(full.values())), np.mean(list(bc.values()))
    assert comparison["relative"] == pytest.approx(mean_full / mean_bc - 1.0)
    assert comparison["num_episodes"] == 24 and comparison["num_houses"] == 6


def test_html_is_self_contained_with_embedded_plots(built):
    _, out_dir = built
    page = open(os.path.join(out_dir, "report.html"), encoding="utf-8").read()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    for encoded in images:
        assert base64.b64decode(encoded)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<style>" in page and "<link" not in page and 'src="http' not in page
    for row in EXPECTED_ROWS:
        assert row in page
    for name in ("sr_spl.png", "sr_by_path_length.png"):
        with open(os.path.join(out_dir, name), "rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.load(open(os.path.join(out_dir, "report.json"), encoding="utf-8"))
    assert saved["splits"] == list(SPLITS) and saved["baseline"] == "bc"
    assert not [name for name in os.listdir(out_dir) if name.startswith(".tmp_")]


def test_cli_report_and_its_errors(run_dirs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    out_dir = str(tmp_path / "out")
    args = parser.parse_args(list(run_dirs[:4]) + ["--out", out_dir, "--baseline", "bc", "--n-boot", "200"])
    assert cli_report(args) == 0
    assert os.path.isfile(os.path.join(out_dir, "report.md"))
    args = parser.parse_args(list(run_dirs[:4]) + ["--out", out_dir, "--baseline", "dagger"])
    assert cli_report(args) == 1
    assert "baseline 'dagger' is not among the methods" in capsys.readouterr().err
    with pytest.raises(ReportError, match="distinct, known seeds"):
        build_report([run_dirs[0], run_dirs[0]], out_dir)
    with pytest.raises(ReportError, match="no stats file"):
        build_report([str(tmp_path)], out_dir)


def test_a_split_missing_from_every_run_is_reported(run_dirs, tmp_path):
    report = build_report(run_dirs[:2], str(tmp_path), splits=("val_seen", "test"), n_boot=100)
    assert report["splits"] == ["val_seen"] and report["missing_splits"] == ["test"]
    assert "No run has stats for test." in open(tmp_path / "report.md", encoding="utf-8").read()


def test_a_split_with_withheld_goals_reports_dashes(tmp_path):
    run = new_run_info("bc", "houses", "data/houses_test", seed=0)
    positions = [[0.0, 0.0, 0.0], [0.0, 0.0, -0.25], [0.0, 0.0, -0.25]]
    record = {"positions": positions, "distances_to_goal": None, "stop_called": True, "geodesic_start": None}
    episodes = {str(i): {"house": f"h{i % 2}", "trajectory_id": i, "geodesic_start": None,
                         "metrics": episode_metrics(record),
                         "trajectory": {"positions": positions, "headings": [0.0] * 3, "actions": [FORWARD, STOP]}}
                for i in range(4)}
    save_stats(str(tmp_path / "run" / "stats_test.json"), new_stats("test", "bc_agent", run, episodes))
    report = build_report([str(tmp_path / "run")], str(tmp_path / "out"), splits=("test",), n_boot=100)
    row = report["results"]["test"][0]
    assert row["metrics"]["sr"] is None and row["metrics"]["tl"]["mean"] == pytest.approx(0.25)
    assert row["sr_per_seed"] is None and all(b["num_episodes"] == 0 for b in row["sr_by_path_length"])
    markdown = open(tmp_path / "out" / "report.md", encoding="utf-8").read()
    # 2 houses: every interval carries the few-houses caveat mark
    assert "| bc | 1 | 4 | 2 | 0.25 [0.25, 0.25] † | — | — | — |" in markdown
    predictions = predictions_from_stats(load_stats(str(tmp_path / "run" / "stats_test.json")))
    assert [state["stop"] for state in predictions["0"]] == [False, False, True]


# ----------------------------------------------------------------------------- caveats, curves, HTML

def test_few_houses_caveat_and_the_relative_delta_rule(run_dirs, tmp_path):
    """Intervals from < 5 houses carry the caveat mark; relative ΔSR against a baseline whose
    SR is below 0.10 is not shown (absolute ΔSR is)."""
    from eval.report import MIN_HOUSES, RELATIVE_MIN_BASELINE_SR

    weak = os.path.join(str(tmp_path), "weak")
    for split in SPLITS:
        stats = load_stats(os.path.join(run_dirs[7], stats_filename(split)))
        stats["run"]["method"] = "weak"
        for k, entry in enumerate(stats["episodes"].values()):
            entry["metrics"]["sr"] = 1.0 if k == 0 else 0.0   # 1 success in 24: SR 0.04
        stats["aggregate"] = aggregate(stats["episodes"])
        save_stats(os.path.join(weak, stats_filename(split)), stats)
    report = build_report([weak, run_dirs[0], run_dirs[1]], str(tmp_path / "out"), baseline="weak", n_boot=200)
    rows = {row["method"]: row for row in report["results"]["val_seen"]}
    comparison = rows["bc"]["vs_baseline"]
    assert comparison["baseline_sr"] < RELATIVE_MIN_BASELINE_SR and not comparison["relative_shown"]
    assert comparison["relative"] is not None          # kept in report.json
    markdown = open(tmp_path / "out" / "report.md", encoding="utf-8").read()
    bc_line = next(line for line in markdown.split("## val_seen")[1].splitlines() if line.startswith("| bc |"))
    assert "n/a ‡ (baseline SR 0.04)" in bc_line and "%" not in bc_line
    assert f"at least {RELATIVE_MIN_BASELINE_SR:.2f}" in markdown          # the rule is stated
    assert "†" not in bc_line and not rows["bc"]["few_houses"]             # 6 houses: no caveat
    # the same runs cut to 2 houses: every interval and ΔSR is marked
    few = []
    for name, source in (("weak2", weak), ("bc2", run_dirs[0])):
        for split in SPLITS:
            stats = load_stats(os.path.join(source, stats_filename(split)))
            stats["episodes"] = {k: v for k, v in stats["episodes"].items()
                                 if v["house"] in (f"{split}_house_0", f"{split}_house_1")}
            stats["aggregate"] = aggregate(stats["episodes"])
            save_stats(os.path.join(str(tmp_path), name, stats_filename(split)), stats)
        few.append(os.path.join(str(tmp_path), name))
    report = build_report(few, str(tmp_path / "few"), baseline="weak", n_boot=200)
    row = next(r for r in report["results"]["val_unseen"] if r["method"] == "bc")
    assert row["num_houses"] == 2 < MIN_HOUSES and row["few_houses"] and row["vs_baseline"]["few_houses"]
    markdown = open(tmp_path / "few" / "report.md", encoding="utf-8").read()
    bc_line = next(line for line in markdown.split("## val_unseen")[1].splitlines() if line.startswith("| bc |"))
    assert bc_line.count("] †") == len(TABLE_COLUMNS) + 1                  # every metric and ΔSR
    assert "fewer than 5 houses" in markdown
    page = open(tmp_path / "few" / "report.html", encoding="utf-8").read()
    assert 'class="caveat"' in page


def write_training_run(root, name, method, seed, skill, updates=(20, 40, 60, 80)):
    """A training run dir as ``langnav train`` leaves it: train_log.jsonl, checkpoints/ and
    its evaluation in RUN/eval."""
    train_dir = os.path.join(str(root), name)
    os.makedirs(os.path.join(train_dir, "checkpoints"), exist_ok=True)
    with open(os.path.join(train_dir, "train_log.jsonl"), "w") as f:
        for k, update in enumerate(updates):
            f.write(json.dumps({"update": update, "training_frames": 1000, "samples": 500 * (k + 1),
                                "action_loss": 1.0 / (k + 1), "progress_loss": 0.1 / (k + 1),
                                "accuracy": 0.5 + 0.1 * k, "epoch": k // 2}) + "\n")
    run = new_run_info(method, "houses", "data/houses_test", seed=seed,
                       checkpoint=os.path.join(train_dir, "checkpoints", "ckpt_80.pt"),
                       notes="smoke settings")
    for split in SPLITS:
        stats = new_stats(split, f"agent_{name}", run, simulate_episodes(split, skill, seed))
        save_stats(os.path.join(train_dir, "eval", stats_filename(split)), stats)
    return os.path.join(train_dir, "eval")


def test_learning_curves_and_runs_of_trained_agents(run_dirs, tmp_path):
    trained = write_training_run(tmp_path, "train_bc", "BC smoke", 0, skill=0.4)
    out = tmp_path / "out"
    report = build_report([run_dirs[7], trained], str(out), n_boot=100)
    (entry,) = report["training_runs"]
    assert entry["method"] == "BC smoke" and entry["num_rows"] == 4
    assert entry["curves"]["action_loss"][0] == [20.0, 1.0] and "samples" not in entry["curves"]
    assert report["files"]["plots"][-1] == "learning_curves.png"
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "![Learning curves](learning_curves.png)" in markdown and "notes: smoke settings" in markdown
    page = (out / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<figcaption>", page)) == 3 and "notes: smoke settings" in page
    assert "train_log.jsonl" in page
    # SR per house: a row per house, a column per method, in both formats
    row = report["results"]["val_seen"][1]
    assert sorted(row["sr_by_house"]) == [f"val_seen_house_{h}" for h in range(NUM_HOUSES)]
    assert sum(v["n"] for v in row["sr_by_house"].values()) == NUM_HOUSES * EPISODES_PER_HOUSE
    assert "SR per house (val_seen" in markdown and "| val_seen_house_5 |" in markdown


CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)

MEASURE_SCRIPT = """<script>
window.addEventListener("load", function () {
  var wraps = Array.prototype.map.call(document.querySelectorAll(".table-wrap"),
      function (w) { return [w.scrollWidth, w.clientWidth]; });
  var out = {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
             wraps: wraps, h2: Array.prototype.map.call(document.querySelectorAll("h2"), function (h) { return h.id; }),
             captions: document.querySelectorAll("figcaption").length,
             images: Array.prototype.map.call(document.images, function (i) {
               return [i.naturalWidth, i.getBoundingClientRect().right]; })};
  var pre = document.createElement("pre");
  pre.id = "measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to render the HTML report (tools/setup.sh installs "
                                             "the Debian package 'chromium' where apt-get may be used)")
def test_html_report_fits_a_laptop_screen_in_a_real_browser(run_dirs, tmp_path):
    """The report with a baseline (the widest tables) and a training run, rendered by headless
    Chromium at 1,400 px: no horizontal scrolling of the page or of any table, every section."""
    trained = write_training_run(tmp_path, "train_bc", "BC smoke run, not a result", 0, skill=0.4)
    out = tmp_path / "out"
    report = build_report(list(run_dirs) + [trained], str(out), baseline="bc", n_boot=100)
    page = (out / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE_SCRIPT + "</body>"), encoding="utf-8")
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--window-size=1400,900", "--virtual-time-budget=10000", "--dump-dom",
                             probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="measure">(.*?)</pre>', result.stdout, re.S)
    assert found, f"Chromium gave no measurement (exit {result.returncode}): {result.stderr[-1500:]}"
    measure = json.loads(html.unescape(found.group(1)))
    assert measure["innerWidth"] == 1400
    assert measure["scrollWidth"] <= 1400, measure
    assert measure["wraps"] and all(scroll <= client + 1 for scroll, client in measure["wraps"]), measure["wraps"]
    assert all(width > 0 and right <= 1400 for width, right in measure["images"]), measure["images"]
    expected = [f"split-{split}" for split in SPLITS] + ["plots", "runs", "notes"]
    assert measure["h2"] == expected and measure["captions"] == len(report["files"]["plots"]) == 3
