"""The habitat backend without habitat-sim: lazy imports, the unavailable-backend error,
the backend factory, the VLN-CE values of habitat_configs/habitat/vln_r2r.yaml, and the
pure quaternion / scene-path / token helpers of agent/envs/habitat_env.py.

Simulation behaviour is checked by tests/envs/test_backend_contract.py, which runs the
habitat backend wherever habitat-sim is installed.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from agent.envs import habitat_env
from agent.envs.base import (
    INSTRUCTION_MAX_TOKENS,
    TURN_ANGLE_DEG,
    forward_vector,
    heading_to_quaternion,
    quaternion_to_heading,
    wrap_angle,
)
from agent.envs.factory import BackendConfigError, env_kwargs, make_env
from agent.envs.habitat_env import (
    HABITAT_INSTALL_COMMAND,
    HabitatBackendError,
    HabitatUnavailableError,
    habitat_scene_path,
    heading_from_wxyz,
    instruction_tokens_array,
    rotation_matrix_wxyz,
    validated_yaw_quaternion,
    write_yup_stage_config,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VLN_R2R_YAML = os.path.join(REPO, "habitat_configs", "habitat", "vln_r2r.yaml")
HABITAT_SIM_INSTALLED = importlib.util.find_spec("habitat_sim") is not None

HEADINGS = [k * math.radians(TURN_ANGLE_DEG) for k in range(-24, 25)] + [0.3, -2.9, 3.1]


def _quaternion_product_wxyz(a, b):
    """Hamilton product a*b of (w, x, y, z) quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw)


# ------------------------------------------------------------------------- imports
def test_module_imports_without_habitat_or_torch():
    code = ("import sys, agent.envs.habitat_env, agent.envs.factory; "
            "bad = [m for m in ('habitat_sim', 'habitat', 'quaternion', 'magnum', 'torch') "
            "if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr)


@pytest.mark.skipif(HABITAT_SIM_INSTALLED, reason="habitat_sim is installed here")
def test_make_env_habitat_without_habitat_sim_names_the_install_command(tmp_path):
    with pytest.raises(HabitatUnavailableError) as info:
        make_env({"backend": "habitat", "scenes_dir": str(tmp_path)})
    message = str(info.value)
    assert HABITAT_INSTALL_COMMAND in message
    assert "habitat-lab" in message and "same version" in message
    assert isinstance(info.value, ImportError)


@pytest.mark.skipif(HABITAT_SIM_INSTALLED, reason="habitat_sim is installed here")
def test_the_shipped_config_also_fails_only_on_the_missing_simulator():
    with open(VLN_R2R_YAML) as f:
        cfg = yaml.safe_load(f)
    with pytest.raises(HabitatUnavailableError):
        make_env(cfg)


# ------------------------------------------------------------------------- factory
def test_unknown_backend_lists_the_choices(tmp_path):
    with pytest.raises(BackendConfigError) as info:
        make_env({"backend": "gibson", "scenes_dir": str(tmp_path)})
    assert "gibson" in str(info.value)
    assert "houses" in str(info.value) and "habitat" in str(info.value)


def test_missing_backend_key_is_an_error(tmp_path):
    with pytest.raises(BackendConfigError, match="backend"):
        make_env({"scenes_dir": str(tmp_path)})


def test_unknown_env_key_is_named(tmp_path):
    with pytest.raises(BackendConfigError) as info:
        env_kwargs({"backend": "habitat", "scenes_dir": str(tmp_path), "widht": 64})
    assert "widht" in str(info.value) and "width" in str(info.value)


def test_missing_required_key_is_named():
    with pytest.raises(BackendConfigError, match="scenes_dir"):
        env_kwargs({"backend": "habitat", "width": 64})


def test_houses_backend_is_built_and_rejects_habitat_only_keys(tmp_path):
    from agent.envs.base import NavEnv
    from agent.envs.houses.env import HousesEnv

    env = make_env({"backend": "houses", "scenes_dir": str(tmp_path), "width": 32,
                    "height": 24, "sensors": ["depth"]})
    try:
        assert isinstance(env, HousesEnv) and isinstance(env, NavEnv)
        assert (env.width, env.height, env.sensors) == (32, 24, ("depth",))
    finally:
        env.close()
    with pytest.raises(BackendConfigError, match="depth_width"):
        env_kwargs({"backend": "houses", "scenes_dir": str(tmp_path), "depth_width": 64})


def test_non_env_keys_are_not_passed_to_the_env(tmp_path):
    backend, kwargs = env_kwargs({"backend": "habitat", "scenes_dir": str(tmp_path),
                                  "data_dir": "d", "name": "x", "width": 32})
    assert backend == "habitat"
    assert kwargs == {"scenes_dir": str(tmp_path), "width": 32}


# --------------------------------------------------------------------- vln_r2r.yaml
def test_vln_r2r_yaml_has_the_vlnce_task_values():
    with open(VLN_R2R_YAML) as f:
        cfg = yaml.safe_load(f)
    assert cfg["backend"] == "habitat"
    assert (cfg["width"], cfg["height"]) == (224, 224)
    assert (cfg["depth_width"], cfg["depth_height"]) == (256, 256)
    assert cfg["hfov_deg"] == 90
    assert cfg["camera_height"] == 1.25
    assert cfg["forward_step"] == 0.25
    assert cfg["turn_angle_deg"] == 15
    assert cfg["allow_sliding"] is True
    assert cfg["max_steps"] == 500
    assert cfg["success_distance"] == 3.0
    assert cfg["expert_goal_radius"] == 0.5
    assert (cfg["agent_radius"], cfg["agent_height"]) == (0.1, 1.5)
    assert cfg["glb_up_axis"] == "z" and cfg["recompute_navmesh"] is False   # MP3D
    assert cfg["scenes_dir"] == "data/scene_datasets"
    assert cfg["data_dir"] == "data/datasets/R2R_VLNCE_v1-3_preprocessed"
    assert isinstance(cfg["gpu_device_id"], int)
    with open(VLN_R2R_YAML) as f:
        text = f.read()
    assert "gpu_device_id" in text and "-1" in text   # the CPU-rendering option is documented


def test_vln_r2r_yaml_keys_are_all_accepted_by_the_habitat_env():
    with open(VLN_R2R_YAML) as f:
        cfg = yaml.safe_load(f)
    backend, kwargs = env_kwargs(cfg)       # raises on any key HabitatEnv does not take
    assert backend == "habitat"
    assert "data_dir" not in kwargs and kwargs["width"] == 224


# ------------------------------------------------------------------ quaternion helpers
@pytest.mark.parametrize("theta", HEADINGS)
def test_quaternion_order_round_trips(theta):
    xyzw = heading_to_quaternion(theta)
    wxyz = xyzw_to_wxyz(xyzw)
    assert wxyz[0] == pytest.approx(math.cos(theta / 2.0))     # w comes first
    assert wxyz[2] == pytest.approx(math.sin(theta / 2.0))     # y is the third entry
    assert wxyz_to_xyzw(wxyz) == pytest.approx(tuple(xyzw))
    assert heading_from_wxyz(wxyz) == pytest.approx(wrap_angle(theta), abs=1e-9)


@pytest.mark.parametrize("theta", HEADINGS)
def test_wxyz_rotation_faces_the_contract_forward_vector(theta):
    rotation = rotation_matrix_wxyz(xyzw_to_wxyz(heading_to_quaternion(theta)))
    # habitat-sim's agents look along local -Z
    facing = rotation @ np.array([0.0, 0.0, -1.0])
    np.testing.assert_allclose(facing, forward_vector(theta), atol=1e-12)
    # and their right is local +X
    right = rotation @ np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(right, [math.cos(theta), 0.0, -math.sin(theta)], atol=1e-12)


def test_turn_left_is_a_positive_rotation_about_plus_y():
    turn = xyzw_to_wxyz(heading_to_quaternion(math.radians(TURN_ANGLE_DEG)))
    for theta in HEADINGS:
        turned = _quaternion_product_wxyz(xyzw_to_wxyz(heading_to_quaternion(theta)), turn)
        expected = wrap_angle(theta + math.radians(TURN_ANGLE_DEG))
        assert heading_from_wxyz(turned) == pytest.approx(expected, abs=1e-9)


def test_negated_quaternion_has_the_same_heading():
    for theta in HEADINGS:
        w, x, y, z = xyzw_to_wxyz(heading_to_quaternion(theta))
        assert heading_from_wxyz((-w, -x, -y, -z)) == pytest.approx(wrap_angle(theta), abs=1e-9)


def test_validated_yaw_quaternion_accepts_vlnce_rotations_and_renormalises():
    q = validated_yaw_quaternion([0, 0.70710678, 0, 0.70710678], "ep 1")
    assert q == pytest.approx((0.0, math.sqrt(0.5), 0.0, math.sqrt(0.5)))
    slightly_long = [0.0, 0.6, 0.0, 0.8004]
    q = validated_yaw_quaternion(slightly_long, "ep 1")
    assert math.sqrt(sum(v * v for v in q)) == pytest.approx(1.0)
    assert quaternion_to_heading(q) == pytest.approx(quaternion_to_heading(slightly_long))


@pytest.mark.parametrize("bad, match", [
    ([0.3, 0.0, 0.0, 0.9539392], "about \\+Y"),          # roll: unit but not yaw-only
    ([0.0, 0.5, 0.0, 0.5], "unit"),                       # not unit
    ([0.0, 1.0, 0.0], "4 numbers"),
    ([0.0, float("nan"), 0.0, 1.0], "unit"),
])
def test_validated_yaw_quaternion_rejects_bad_rotations_naming_the_episode(bad, match):
    with pytest.raises(HabitatBackendError, match=match) as info:
        validated_yaw_quaternion(bad, "episode '42'")
    assert "episode '42'" in str(info.value)


# --------------------------------------------------------------------- other helpers
def test_scene_path_follows_the_habitat_lab_r2r_loader():
    assert habitat_scene_path("data/scene_datasets", "mp3d/X/X.glb") == \
        os.path.join("data/scene_datasets", "mp3d/X/X.glb")
    assert habitat_scene_path("/scenes", "data/scene_datasets/mp3d/X/X.glb") == \
        os.path.join("/scenes", "mp3d/X/X.glb")


def test_instruction_tokens_are_zero_padded_int64():
    tokens = instruction_tokens_array([5, 9, 2], "ep")
    assert tokens.dtype == np.int64 and tokens.shape == (INSTRUCTION_MAX_TOKENS,)
    assert tokens[:3].tolist() == [5, 9, 2] and not tokens[3:].any()
    # VLN-CE pads to exactly 200; extra padding is dropped, extra words are an error
    assert instruction_tokens_array([7] + [0] * 250, "ep")[0] == 7
    with pytest.raises(HabitatBackendError, match="more than"):
        instruction_tokens_array([1] * (INSTRUCTION_MAX_TOKENS + 1), "ep")


def test_module_exposes_no_habitat_names_at_import():
    # the module defers every habitat import to the constructor
    assert not hasattr(habitat_env, "habitat_sim")
    assert not hasattr(habitat_env, "quaternion")


def test_yup_stage_config_points_habitat_at_the_glb_without_touching_the_scenes_dir(tmp_path):
    scenes = tmp_path / "scenes" / "h0"
    scenes.mkdir(parents=True)
    glb = scenes / "h0.glb"
    glb.write_bytes(b"glTF-bytes")
    stage_dir = tmp_path / "stages"
    stage_dir.mkdir()
    link = write_yup_stage_config(str(glb), str(stage_dir), "scene0_h0")
    assert link == str(stage_dir / "scene0_h0.glb")
    with open(link, "rb") as f:                       # the link reads the scene's bytes
        assert f.read() == b"glTF-bytes"
    # habitat-sim finds <stem>.stage_config.json beside the file it is given
    with open(stage_dir / "scene0_h0.stage_config.json") as f:
        config = json.load(f)
    assert config["render_asset"] == "scene0_h0.glb"
    assert config["up"] == [0.0, 1.0, 0.0] and config["front"] == [0.0, 0.0, -1.0]
    assert sorted(p.name for p in scenes.iterdir()) == ["h0.glb"]
    # idempotent: a second scene load rewrites the config and keeps the link
    assert write_yup_stage_config(str(glb), str(stage_dir), "scene0_h0") == link
