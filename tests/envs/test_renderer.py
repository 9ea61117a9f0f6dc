"""Headless renderer: depth accuracy and planarity, heading convention, image orientation,
object ids, scene cache, shading, and the error raised when EGL is unavailable.

Scenes are built by hand from boxes so that every expected value follows from geometry.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import pytest

from agent.envs.base import CAMERA_HEIGHT_M, DEPTH_MAX_M
from agent.envs.houses.mesh import MATERIAL_ID, SceneMesh
from agent.envs.houses.renderer import Renderer, RendererUnavailableError

Box = Tuple[Sequence[float], Sequence[float]]   # (min corner xyz, max corner xyz)

# the six faces of a unit box: (axis, side 0 = min / 1 = max)
_FACES = [(axis, side) for axis in range(3) for side in (0, 1)]


def box_mesh_parts(lo: Sequence[float], hi: Sequence[float], color: Sequence[float],
                   material: str = "plain", object_id: int = -1, inward: bool = False,
                   skip_faces: Sequence[Tuple[int, int]] = ()) -> List[dict]:
    """Quads (as dicts of arrays) for the faces of an axis-aligned box; normals point
    inward for a room, outward for an object."""
    parts = []
    for axis, side in _FACES:
        if (axis, side) in skip_faces:
            continue
        u, v = [a for a in range(3) if a != axis]
        corners = []
        for cu, cv in ((0, 0), (1, 0), (1, 1), (0, 1)):
            p = [0.0, 0.0, 0.0]
            p[axis] = (lo, hi)[side][axis]
            p[u] = (lo, hi)[cu][u]
            p[v] = (lo, hi)[cv][v]
            corners.append(p)
        normal = [0.0, 0.0, 0.0]
        normal[axis] = (-1.0 if side == 0 else 1.0) * (-1.0 if inward else 1.0)
        parts.append({"positions": np.array(corners, np.float32),
                      "normal": normal, "color": color,
                      "material": MATERIAL_ID[material], "object_id": object_id})
    return parts


def scene_mesh(parts: List[dict]) -> SceneMesh:
    positions, normals, colors, materials, object_ids, indices = [], [], [], [], [], []
    for part in parts:
        base = sum(len(p) for p in positions)
        positions.append(part["positions"])
        normals.append(np.tile(np.array(part["normal"], np.float32), (4, 1)))
        colors.append(np.tile(np.array(part["color"], np.float32), (4, 1)))
        materials.append(np.full(4, part["material"], np.int32))
        object_ids.append(np.full(4, part["object_id"], np.int32))
        indices.append(np.array([[0, 1, 2], [0, 2, 3]], np.uint32) + base)
    return SceneMesh(positions=np.concatenate(positions), normals=np.concatenate(normals),
                     colors=np.concatenate(colors), material=np.concatenate(materials),
                     object_ids=np.concatenate(object_ids), indices=np.concatenate(indices))


GREY = (0.6, 0.6, 0.6)
RED = (0.9, 0.1, 0.1)


def room_with_front_wall_at(distance: float) -> SceneMesh:
    """A closed room around the origin whose -Z wall is ``distance`` metres in front of an
    agent at the origin facing -Z (theta = 0)."""
    return scene_mesh(box_mesh_parts((-8.0, 0.0, -distance), (8.0, 3.0, 8.0), GREY,
                                     inward=True))


@pytest.fixture(scope="module")
def renderer():
    with Renderer(128, 128) as r:
        yield r


@pytest.mark.parametrize("distance", [0.5, 2.0, 7.0])
def test_depth_facing_wall_reads_its_distance(renderer, distance):
    renderer.load_scene(f"wall{distance}", room_with_front_wall_at(distance))
    rgb, depth = renderer.render((0.0, 0.0, 0.0), 0.0)
    centre = depth[63:65, 63:65, 0]
    assert np.all(np.abs(centre - distance) <= 0.02), (distance, centre)


def test_depth_is_planar_not_ray_length(renderer):
    distance = 2.0
    renderer.load_scene("planar", room_with_front_wall_at(distance))
    _, depth = renderer.render((0.0, 0.0, 0.0), 0.0)
    # the eye-level row sees the front wall across the whole 90 deg view (it spans
    # x in [-8, 8] and the view at 2 m only [-2, 2])
    row = depth[64, :, 0]
    assert np.all(np.abs(row - distance) <= 0.02), row
    # the Euclidean ray length at the edge column would be ~ distance * sqrt(2)
    edge_ray_length = distance / math.cos(math.radians(45.0 - 45.0 / 128))
    assert abs(row[0] - edge_ray_length) > 0.5


def test_depth_clipped_and_background_reads_max(renderer):
    # far wall 25 m away: clipped to DEPTH_MAX_M
    renderer.load_scene("far", room_with_front_wall_at(25.0))
    _, depth = renderer.render((0.0, 0.0, 0.0), 0.0)
    assert np.all(depth[64, 60:68, 0] == DEPTH_MAX_M)
    # a lone box with nothing behind it: the sky reads DEPTH_MAX_M, the box its distance
    renderer.load_scene("void", scene_mesh(box_mesh_parts((-0.5, 0.0, -3.5), (0.5, 2.0, -3.0),
                                                          RED, object_id=1)))
    rgb, depth = renderer.render((0.0, 0.0, 0.0), 0.0)
    assert abs(depth[64, 64, 0] - 3.0) <= 0.02
    assert depth[64, 0, 0] == DEPTH_MAX_M and depth[0, 64, 0] == DEPTH_MAX_M
    assert depth.min() >= 0.0 and depth.max() <= DEPTH_MAX_M
    assert rgb[64, 0].tolist() == [0, 0, 0]


def left_box_scene() -> SceneMesh:
    """Grey room around the origin and a red box (object 7) 3 m to the -X side, which is
    the agent's left at theta = 0."""
    parts = box_mesh_parts((-6.0, 0.0, -6.0), (6.0, 3.0, 6.0), GREY, inward=True)
    parts += box_mesh_parts((-3.5, 0.0, -0.5), (-3.0, 2.0, 0.5), RED, object_id=7)
    return scene_mesh(parts)


def is_red(pixel: np.ndarray) -> bool:
    r, g, b = (int(c) for c in pixel)
    return r > 2 * g + 10 and r > 2 * b + 10


def test_turning_left_shows_what_was_on_the_left(renderer):
    renderer.load_scene("left_box", left_box_scene())
    origin = (0.0, 0.0, 0.0)
    rgb_ahead, depth_ahead = renderer.render(origin, 0.0)
    rgb_left, depth_left = renderer.render(origin, math.radians(90.0))   # TURN_LEFT x 6
    rgb_right, _ = renderer.render(origin, math.radians(-90.0))
    assert not is_red(rgb_ahead[64, 64])
    assert not is_red(rgb_right[64, 64])
    assert is_red(rgb_left[64, 64])
    assert abs(depth_left[64, 64, 0] - 3.0) <= 0.02
    # at theta = 60 deg the box's near face (x = -3, z in [-0.5, 0.5]) lies 20.5 to 39.5
    # degrees left of the view centre: columns 64 - 64 tan(angle), i.e. about 11 to 40
    rgb_60, _ = renderer.render(origin, math.radians(60.0))
    red_columns = [c for c in range(128) if is_red(rgb_60[64, c])]
    near_face_angles = [math.degrees(math.atan2(3.0, z)) - 60.0 for z in (0.5, -0.5)]
    expected = [64 - 64 * math.tan(math.radians(a)) for a in sorted(near_face_angles)[::-1]]
    assert abs(min(red_columns) - expected[0]) <= 2 and abs(max(red_columns) + 1 - expected[1]) <= 2


def test_object_ids_find_box_in_view_and_not_behind(renderer):
    renderer.load_scene("left_box", left_box_scene())
    ids_facing = renderer.render_object_ids((0.0, 0.0, 0.0), math.radians(90.0))
    ids_behind = renderer.render_object_ids((0.0, 0.0, 0.0), math.radians(-90.0))
    assert ids_facing.dtype == np.int32 and ids_facing.shape == (128, 128)
    assert ids_facing[64, 64] == 7
    assert set(np.unique(ids_facing).tolist()) == {-1, 7}
    assert np.all(ids_behind == -1)


def test_row_zero_is_top_of_view(renderer):
    # a low box (object 3) on the floor 2 m ahead: below the horizon, i.e. bottom half
    parts = box_mesh_parts((-6.0, 0.0, -6.0), (6.0, 3.0, 6.0), GREY, inward=True)
    parts += box_mesh_parts((-0.5, 0.0, -2.5), (0.5, 0.4, -2.0), RED, object_id=3)
    renderer.load_scene("low_box", scene_mesh(parts))
    ids = renderer.render_object_ids((0.0, 0.0, 0.0), 0.0)
    rows = np.nonzero((ids == 3).any(axis=1))[0]
    assert rows.size and rows.min() > 64
    # seen from above, its highest point in the image is the far top edge:
    # (1.25 - 0.4) m below the eye at 2.5 m
    expected_top_row = 64 + 64 * (CAMERA_HEIGHT_M - 0.4) / 2.5
    assert abs(rows.min() - expected_top_row) <= 2


@pytest.mark.parametrize("size", [(128, 128), (160, 96)])
def test_shapes_dtypes_and_vertical_fov(size):
    width, height = size
    with Renderer(width, height) as r:
        r.load_scene("room", room_with_front_wall_at(3.0))
        rgb, depth = r.render((0.0, 0.0, 0.0), 0.0)
        assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
        assert depth.shape == (height, width, 1) and depth.dtype == np.float32
        ids = r.render_object_ids((0.0, 0.0, 0.0), 0.0)
        assert ids.shape == (height, width) and ids.dtype == np.int32
        rgb_only, no_depth = r.render((0.0, 0.0, 0.0), 0.0, depth=False)
        assert no_depth is None and np.array_equal(rgb_only, rgb)
        # square pixels: the floor/wall edge (1.25 m below the eye at 3 m) lies
        # (1.25 / 3) / tan(vfov / 2) of the half-height below the centre
        tan_half_v = math.tan(math.radians(r.vfov_deg) / 2.0)
        assert math.isclose(tan_half_v, height / width, rel_tol=1e-6)
        column = depth[:, width // 2, 0]
        on_wall = np.nonzero(np.abs(column - 3.0) <= 0.02)[0]
        expected_bottom = height / 2 * (1 + (CAMERA_HEIGHT_M / 3.0) / tan_half_v)
        assert abs(on_wall.max() + 1 - expected_bottom) <= 1.5


def test_scene_cache_evicts_least_recently_used():
    with Renderer(32, 32, max_cached_scenes=2) as r:
        r.load_scene("a", room_with_front_wall_at(1.0))
        r.load_scene("b", room_with_front_wall_at(2.0))
        r.set_scene("a")                       # a is now most recent
        r.load_scene("c", room_with_front_wall_at(3.0))
        assert r.has_scene("a") and r.has_scene("c") and not r.has_scene("b")
        with pytest.raises(KeyError, match="'b'"):
            r.set_scene("b")
        r.set_scene("a")
        _, depth = r.render((0.0, 0.0, 0.0), 0.0)
        assert abs(depth[16, 16, 0] - 1.0) <= 0.02
        assert r.scene_key == "a" and r.num_triangles == 12


def test_render_without_scene_and_after_close_raise():
    r = Renderer(16, 16)
    with pytest.raises(RuntimeError, match="no current scene"):
        r.render((0.0, 0.0, 0.0), 0.0)
    r.close()
    r.close()   # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        r.render((0.0, 0.0, 0.0), 0.0)


def test_renderers_in_one_thread_do_not_disturb_each_other(renderer):
    renderer.load_scene("wall2.0", room_with_front_wall_at(2.0))
    with Renderer(32, 32) as other:          # creating a context makes it current
        other.load_scene("wall1", room_with_front_wall_at(1.0))
        _, depth = renderer.render((0.0, 0.0, 0.0), 0.0)
        _, other_depth = other.render((0.0, 0.0, 0.0), 0.0)
    _, depth_after_close = renderer.render((0.0, 0.0, 0.0), 0.0)
    assert abs(depth[64, 64, 0] - 2.0) <= 0.02 and abs(other_depth[16, 16, 0] - 1.0) <= 0.02
    assert abs(depth_after_close[64, 64, 0] - 2.0) <= 0.02


def test_unavailable_backend_names_system_packages():
    with pytest.raises(RendererUnavailableError) as info:
        Renderer(16, 16, backend="nonexistent")
    message = str(info.value)
    assert "libegl1" in message and "libgl1-mesa-dri" in message
    assert "apt-get install -y libegl1 libgl1-mesa-dri" in message
    assert "nonexistent" in message            # the underlying error is kept
    assert isinstance(info.value, RuntimeError)


def floor_patch_stats(renderer: Renderer, material: str) -> Tuple[np.ndarray, float]:
    """Mean colour and mean local contrast of the floor seen ahead in a room floored with
    ``material`` (same base colour for every material)."""
    parts = box_mesh_parts((-6.0, 0.0, -6.0), (6.0, 3.0, 6.0), GREY, inward=True,
                           skip_faces=[(1, 0)])
    parts += box_mesh_parts((-6.0, -0.1, -6.0), (6.0, 0.0, 6.0), (0.7, 0.5, 0.3),
                            material=material, skip_faces=[(1, 0)])
    renderer.load_scene(f"floor_{material}", scene_mesh(parts))
    rgb, _ = renderer.render((0.0, 0.0, 0.0), 0.0)
    patch = rgb[96:128, 32:96].astype(np.float32).mean(axis=2)
    contrast = float(np.abs(np.diff(patch, axis=0)).mean() + np.abs(np.diff(patch, axis=1)).mean())
    return rgb[96:128, 32:96].reshape(-1, 3).mean(axis=0), contrast


def test_materials_shade_differently(renderer):
    stats = {m: floor_patch_stats(renderer, m) for m in ("plain", "wood", "tile", "carpet",
                                                          "stone", "fabric")}
    plain_contrast = stats["plain"][1]
    for material in ("wood", "tile", "carpet", "stone", "fabric"):
        assert stats[material][1] > plain_contrast + 1.0, (material, stats)
    contrasts = sorted(s[1] for m, s in stats.items() if m != "plain")
    assert len(set(np.round(contrasts, 1))) == len(contrasts)


def test_lighting_depends_on_surface_orientation(renderer):
    renderer.load_scene("left_box", left_box_scene())
    rgb, _ = renderer.render((0.0, 0.0, 0.0), 0.0)
    floor_brightness = rgb[120, 64].astype(int).sum()
    wall_brightness = rgb[64, 64].astype(int).sum()
    ceiling_brightness = rgb[4, 64].astype(int).sum()
    # same grey albedo, different normals -> different shades
    assert len({floor_brightness // 8, wall_brightness // 8, ceiling_brightness // 8}) == 3


# ------------------------------------------------------------- a generated house
def ray_to_nearest_wall(plan, x: float, z: float, heading: float) -> float:
    """Distance along the horizontal ray from (x, z) at ``heading`` to the first wall box
    (slab test against every wall's footprint)."""
    dx, dz = -math.sin(heading), -math.cos(heading)
    nearest = math.inf
    for wall in plan.walls:
        r = wall.rect
        t_near, t_far = -math.inf, math.inf
        for origin, direction, lo, hi in ((x, dx, r.x0, r.x1), (z, dz, r.z0, r.z1)):
            if abs(direction) < 1e-12:
                if not lo <= origin <= hi:
                    t_near, t_far = math.inf, -math.inf
                continue
            t0, t1 = sorted(((lo - origin) / direction, (hi - origin) / direction))
            t_near, t_far = max(t_near, t0), min(t_far, t1)
        if t_near <= t_far and t_near > 0:
            nearest = min(nearest, t_near)
    return nearest


@pytest.fixture(scope="module")
def generated_house():
    from agent.envs.houses.generator import generate_house
    from agent.envs.houses.mesh import build_mesh

    plan = generate_house("renderer_test", 5, size="small")
    return plan, build_mesh(plan)


def test_generated_house_depth_matches_plan_walls(generated_house):
    """From each room centre, in 8 directions, the centre pixel (odd image size: its ray is
    the camera axis) reads the distance to the first wall of the floor plan whenever no
    furniture is in the way."""
    plan, mesh = generated_house
    checked = 0
    with Renderer(129, 129) as r:
        r.load_scene(plan.house_id, mesh)
        for room in plan.rooms:
            x, z = room.rect.center
            for k in range(8):
                heading = k * math.pi / 4 + 0.1
                expected = ray_to_nearest_wall(plan, x, z, heading)
                if r.render_object_ids((x, 0.0, z), heading)[64, 64] != -1:
                    continue                              # furniture at eye level
                _, depth = r.render((x, 0.0, z), heading)
                assert abs(depth[64, 64, 0] - min(expected, DEPTH_MAX_M)) <= 0.02, \
                    (room.room_type, k, expected, depth[64, 64, 0])
                checked += 1
    assert checked >= 4 * len(plan.rooms)


def test_generated_house_landmarks_visible_from_room_centre(generated_house):
    from agent.envs.base import heading_towards

    plan, mesh = generated_house
    with Renderer(128, 128) as r:
        r.load_scene(plan.house_id, mesh)
        seen = 0
        for obj in plan.objects:
            cx, cz = plan.room(obj.room_id).rect.center
            ox, oz = obj.rect.center
            ids = r.render_object_ids((cx, 0.0, cz), heading_towards((cx, 0, cz), (ox, 0, oz)))
            seen += bool((ids == obj.object_id).any())
            # never an id that is not an object of this house
            assert set(np.unique(ids).tolist()) <= {-1} | {o.object_id for o in plan.objects}
        assert seen >= 0.8 * len(plan.objects), (seen, len(plan.objects))
        rgb, depth = r.render((cx, 0.0, cz), 0.0)
        assert rgb.std() > 5.0 and 0.0 < depth.min() and depth.max() <= DEPTH_MAX_M


def test_view_culling_does_not_change_the_image(generated_house):
    plan, mesh = generated_house
    rng = np.random.default_rng(0)
    with Renderer(96, 96) as culled, Renderer(96, 96, view_culling=False) as full:
        culled.load_scene("h", mesh)
        full.load_scene("h", mesh)
        for _ in range(12):
            room = plan.rooms[int(rng.integers(len(plan.rooms)))]
            position = (rng.uniform(room.rect.x0 + 0.3, room.rect.x1 - 0.3), 0.0,
                        rng.uniform(room.rect.z0 + 0.3, room.rect.z1 - 0.3))
            heading = rng.uniform(-math.pi, math.pi)
            rgb_a, depth_a = culled.render(position, heading)
            rgb_b, depth_b = full.render(position, heading)
            # draw order differs, so only exact depth ties could shade differently
            assert np.mean(np.all(rgb_a == rgb_b, axis=2)) > 0.999
            assert np.mean(np.abs(depth_a - depth_b) < 1e-4) > 0.999


def test_cells_in_view_never_drops_a_rectangle_in_the_wedge():
    from agent.envs.houses.renderer import cells_in_view

    rng = np.random.default_rng(1)
    lo = rng.uniform(-10, 10, size=(300, 2))
    bounds = np.concatenate([lo, lo + rng.uniform(0.05, 4.0, size=(300, 2))], axis=1)
    half_fov = math.radians(45.0)
    kept_share, in_wedge_share = [], []
    for _ in range(20):
        eye = rng.uniform(-8, 8, size=2)
        heading = rng.uniform(-math.pi, math.pi)
        kept = cells_in_view(bounds, eye, heading, half_fov)
        # sample points of every rectangle; any point strictly inside the wedge => kept
        u = rng.uniform(0, 1, size=(300, 64, 2))
        points = bounds[:, None, :2] + u * (bounds[:, None, 2:] - bounds[:, None, :2])
        rel = points - eye
        forward = np.array([-math.sin(heading), -math.cos(heading)])
        along = rel @ forward
        angle = np.arccos(np.clip(along / np.linalg.norm(rel, axis=2), -1, 1))
        in_wedge = ((along > 0) & (angle < half_fov)).any(axis=1)
        assert np.all(kept[in_wedge])
        kept_share.append(kept.mean())
        in_wedge_share.append(in_wedge.mean())
    # and it does cull: few rectangles are kept that are not in the wedge
    assert np.mean(kept_share) < np.mean(in_wedge_share) + 0.1 < 0.7, (kept_share, in_wedge_share)


def test_camera_matrix_closed_form_matches_matrices(renderer):
    from agent.envs.houses.renderer import projection_matrix, view_matrix

    renderer.load_scene("planar", room_with_front_wall_at(2.0))
    position, heading = (1.5, 0.2, -0.7), 0.83
    renderer.render(position, heading)
    uploaded = np.frombuffer(renderer._shade_program["view_projection"].read(), np.float32)
    eye = (1.5, 0.2 + CAMERA_HEIGHT_M, -0.7)
    expected = projection_matrix(90.0, 128, 128) @ view_matrix(eye, heading)
    assert np.allclose(uploaded.reshape(4, 4).T, expected, atol=1e-5)
    # the camera looks along the forward vector of agent/envs/base.py
    forward = np.array([-math.sin(heading), 0.0, -math.cos(heading)])
    ahead = np.append(np.array(eye) + 3.0 * forward, 1.0)
    clip = expected @ ahead
    assert np.allclose(clip[:2] / clip[3], 0.0, atol=1e-6) and clip[3] > 0


def test_bench_render_reports_figures_for_each_size(generated_house, capsys):
    from agent.bench import bench_render

    plan, _ = generated_house
    result = bench_render(plan, sizes=((32, 32), (48, 24)), seconds=0.2, num_poses=16)
    assert result["triangles"] > 100 and result["gl_renderer"]
    assert [(s["width"], s["height"]) for s in result["sizes"]] == [(32, 32), (48, 24)]
    for row in result["sizes"]:
        assert row["rgbd_fps"] > 0 and row["rgb_fps"] > 0 and row["rgbd_cpu_ms"] > 0
    printed = capsys.readouterr().out
    assert "RGB-D" in printed and "48x24" in printed and str(result["triangles"]) in printed
    with pytest.raises(TypeError, match="FloorPlan"):
        bench_render("not a plan", seconds=0.1)
    from_mesh = bench_render(room_with_front_wall_at(2.0), sizes=((16, 16),), seconds=0.1,
                             verbose=False)
    assert from_mesh["triangles"] == 12 and from_mesh["sizes"][0]["rgbd_fps"] > 0


def _render_centre_depth_in_worker(distance: float) -> float:
    with Renderer(32, 32) as r:
        r.load_scene("wall", room_with_front_wall_at(distance))
        _, depth = r.render((0.0, 0.0, 0.0), 0.0)
    return float(depth[16, 16, 0])


def test_renderer_works_in_a_spawned_worker_without_torch():
    import multiprocessing
    import subprocess
    import sys

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        assert abs(pool.apply(_render_centre_depth_in_worker, (1.5,)) - 1.5) <= 0.02
    code = ("import sys, agent.envs.houses.renderer, agent.envs.houses.topdown, agent.bench; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_verbose_logs_gl_strings(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="langnav.renderer"):
        with Renderer(16, 16, verbose=True) as r:
            renderer_name = r.gl_renderer
    assert renderer_name and renderer_name in caplog.text and "version" in caplog.text
