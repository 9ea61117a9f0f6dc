"""Pictures a researcher reads (issue #19): the contact sheet is a grid of start, middle and
end frames per episode with legible captions; panels carry titles, the map a legend and the
whole goal circle, depth a colour map with a metres scale (same in data show, rollout and
reward-map: one set of functions, agent.figures)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from agent.cli import main
from agent.datasets.episodes import load_gt, load_split, split_paths
from agent.envs.houses import topdown as td
from agent.figures import SUCCESS_RADIUS_M, depth_to_rgb

NUM_EPISODES = 3


def ink_line_heights(image: np.ndarray) -> list:
    """Heights (px) of the runs of consecutive rows that hold dark pixels: one per text line."""
    rows = (image.min(axis=2) < 110).any(axis=1)
    heights, run = [], 0
    for has_ink in list(rows) + [False]:
        if has_ink:
            run += 1
        elif run:
            heights.append(run)
            run = 0
    return heights


@pytest.fixture(scope="module")
def sheet(tiny_dataset):
    """Three expert episodes of val_unseen recorded as ``langnav rollout`` does, and their
    contact sheet with its layout."""
    from agent.envs.vector_env import VectorEnv
    from eval.agents import make_agent
    from eval.evaluator import load_backend_config
    from eval.video import contact_sheet, record_episode

    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    gt = load_gt(split_paths(tiny_dataset, "val_unseen")[1])
    cfg = dict(load_backend_config(None, tiny_dataset, width=256, height=256), privileged=True)
    agent = make_agent("expert", 1, tiny_dataset)
    records = []
    with VectorEnv(cfg, 1, in_process=True) as envs:
        agent.bind_envs(envs)
        for episode in episodes[:NUM_EPISODES]:
            frames, record = record_episode(agent, envs, episode, gt, fps=1)
            records.append(record)
    image, layout = contact_sheet(records)
    for record, episode in zip(records, episodes):
        record["instruction_text"] = episode["instruction"]["instruction_text"]
    return image, layout, records


def test_contact_sheet_is_a_legible_grid_of_start_middle_end(sheet):
    image, layout, records = sheet
    assert image.shape[1] >= 1000
    assert len(layout) == NUM_EPISODES
    for record, box in zip(records, layout):
        assert [label.split(" ")[0] for label, _ in record["key_frames"]] == ["start", "middle", "end"]
        steps = [int(label.split("step ")[1].rstrip(")")) for label, _ in record["key_frames"]]
        assert steps[0] == 0 < steps[1] < steps[2] == len(record["actions"])
        x0, y0, x1, y1 = box["caption_box"]
        caption = image[y0:y1, x0:x1]
        heights = ink_line_heights(caption)
        # the metrics line and at least one line of instruction, each >= 10 px tall
        assert len(heights) >= 2 and min(heights) >= 10, heights
        assert "SR 1" in record["caption"] and record["instruction_text"] in record["caption"]
    # the three key frames of one episode differ (the agent moved)
    frames = [f for _, f in records[0]["key_frames"]]
    assert frames[0].shape == frames[2].shape and np.abs(frames[0].astype(int) - frames[2]).mean() > 5


def test_frames_have_titles_depth_scale_and_map_legend(sheet):
    _, _, records = sheet
    panels = records[0]["key_frames"][0][1]
    # a white title band with ink above the 256 px images; images below it
    title_band = panels[:20]
    assert (title_band.min(axis=2) < 110).any() and (title_band > 250).mean() > 0.8
    # depth colour map: far from uniformly white on a real view, and the scale bar beneath
    rgb_width = 256
    depth = panels[30:256, rgb_width + 6:rgb_width + 6 + 256]
    assert depth.mean() < 200 and depth.std() > 20
    scale_bar = panels[24 + 256:24 + 256 + 16, rgb_width + 6 + 20:rgb_width + 6 + 236]
    assert np.ptp(scale_bar.reshape(-1, 3).astype(int).sum(axis=1)) > 300   # dark to bright
    colours = {tuple(c) for c in panels.reshape(-1, 3)}
    for colour in (td.START, td.REFERENCE_PATH, td.AGENT_PATH, td.GOAL):   # map and legend
        assert colour in colours


def test_depth_colour_map_runs_from_dark_near_to_bright_far():
    ramp = depth_to_rgb(np.linspace(0.0, 10.0, 50).reshape(1, 50, 1)).astype(int).sum(axis=2)[0]
    assert ramp[0] < 50 and ramp[-1] > 600 and np.all(np.diff(ramp) >= -3)


def test_goal_circle_is_whole_even_at_the_edge_of_the_house(tiny_dataset):
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for

    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    plan = FloorPlan.load(floorplan_path_for(os.path.join(tiny_dataset, "scenes"), episodes[0]["scene_id"]))
    b = plan.bounds
    corner = [b.x0 + 0.5, 0.0, b.z0 + 0.5]   # 3 m would reach 2.5 m outside the house
    clipped = td.TopDownMap(plan)
    assert clipped.world_to_pixel(corner[0] - SUCCESS_RADIUS_M, corner[2])[0] < 0
    whole = td.TopDownMap(plan, fit_circles=[(corner, SUCCESS_RADIUS_M)])
    image = whole.draw(goal=(corner, SUCCESS_RADIUS_M))
    h, w = image.shape[:2]
    goal = np.all(image == td.GOAL, axis=2)
    for dx, dz in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        col, row = whole.world_to_pixel(corner[0] + dx * SUCCESS_RADIUS_M, corner[2] + dz * SUCCESS_RADIUS_M)
        assert 0 <= col < w and 0 <= row < h
        assert goal[max(0, row - 3):row + 4, max(0, col - 3):col + 4].any(), (dx, dz)
    # the house itself is where it was relative to the goal, and the map grew only as needed
    assert whole.width > clipped.width and whole.height > clipped.height
    assert whole.width - clipped.width <= (SUCCESS_RADIUS_M + 0.1) / whole.meters_per_pixel


def test_data_show_draws_the_same_conventions(tiny_dataset, tmp_path):
    out = tmp_path / "episode.png"
    assert main(["data", "show", tiny_dataset, "--split", "val_unseen", "--episode", "2",
                 "--out", str(out)]) == 0
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[1] >= 600
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    for colour in (td.START, td.REFERENCE_PATH, td.GOAL, td.AGENT):
        assert colour in colours
    assert td.AGENT_PATH not in colours        # no agent path yet: not in the legend either
    assert min(ink_line_heights(picture[-40:])) >= 10   # the instruction's last line
