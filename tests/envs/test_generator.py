"""The procedural house generator and its triangle mesh: determinism, layout invariants
(tiling, connectivity, repeated room types, size), furniture placement, held-out
variants, and the mesh built from a plan."""
from __future__ import annotations

import collections
import os

import numpy as np
import pytest
from scipy import ndimage

from agent.envs.houses import catalog
from agent.envs.houses.floorplan import ROOM_TYPES, FloorPlan, Rect
from agent.envs.houses.generator import (DOOR_CLEARANCE, DOOR_WIDTH, OPENING_WIDTH,
                                         door_clearance, floorplan_path_for, generate_house,
                                         room_graph_components, write_house)
from agent.envs.houses.mesh import MATERIAL_ID, MATERIAL_PATTERNS, SceneMesh, build_mesh

SEEDS = range(12)


@pytest.fixture(scope="module")
def houses():
    return [generate_house(f"house_{s:03d}", s) for s in SEEDS]


@pytest.fixture(scope="module")
def small_houses():
    return [generate_house(f"small_{s:03d}", s, size="small") for s in range(8)]


@pytest.fixture(scope="module")
def heldout_houses():
    return [generate_house(f"unseen_{s:03d}", 1000 + s, variant_set="heldout") for s in range(6)]


def _all(houses, small_houses, heldout_houses):
    return list(houses) + list(small_houses) + list(heldout_houses)


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_identical_plan_and_different_seeds_differ():
    a = generate_house("h", 7)
    b = generate_house("h", 7)
    assert a.to_json() == b.to_json()
    assert generate_house("h", 8).to_json() != a.to_json()
    c = generate_house("h", 7, variant_set="heldout")
    assert c.to_json() == generate_house("h", 7, variant_set="heldout").to_json()
    assert c.to_json() != a.to_json()


def test_unknown_variant_set_or_size_is_an_error_naming_it():
    with pytest.raises(ValueError, match="bogus"):
        generate_house("h", 0, variant_set="bogus")
    with pytest.raises(ValueError, match="huge"):
        generate_house("h", 0, size="huge")


# ---------------------------------------------------------------------- layout
def test_rooms_are_many_typed_and_repeat_types(houses, small_houses):
    for plan in houses:
        counts = collections.Counter(r.room_type for r in plan.rooms)
        assert 6 <= len(plan.rooms) <= 14, plan.house_id
        assert set(counts) <= set(ROOM_TYPES)
        assert counts["bedroom"] >= 2 and counts["bathroom"] >= 2, (plan.house_id, counts)
        assert counts["hallway"] >= 1 and counts["kitchen"] == 1, (plan.house_id, counts)
    for plan in small_houses:
        counts = collections.Counter(r.room_type for r in plan.rooms)
        assert 6 <= len(plan.rooms) <= 8, plan.house_id
        assert counts["bedroom"] >= 2 and max(counts.values()) >= 2, (plan.house_id, counts)
    # some houses have two corridors, so "the hallway" is ambiguous too
    assert any(sum(r.room_type == "hallway" for r in p.rooms) == 2 for p in houses)


def test_houses_are_large(houses, small_houses):
    areas = [p.bounds.area for p in houses]
    assert min(areas) >= 180.0 and max(areas) <= 380.0, areas
    assert 220.0 <= float(np.median(areas)) <= 320.0, areas
    assert all(p.bounds.area < min(areas) for p in small_houses)
    for plan in houses:
        halls = [r for r in plan.rooms if r.room_type == "hallway"]
        assert all(1.5 <= min(h.rect.width, h.rect.depth) <= 2.2 for h in halls)
        assert max(max(h.rect.width, h.rect.depth) for h in halls) >= 5.0, plan.house_id


def test_rooms_tile_the_footprint(houses, small_houses, heldout_houses):
    for plan in _all(houses, small_houses, heldout_houses):
        rects = [r.rect for r in plan.rooms]
        assert sum(r.area for r in rects) == pytest.approx(plan.bounds.area, abs=1e-6)
        for room in plan.rooms:
            narrowest = 1.5 if room.room_type == "hallway" else 2.2
            assert min(room.rect.width, room.rect.depth) >= narrowest, (plan.house_id, room)
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
                overlap_z = min(a.z1, b.z1) - max(a.z0, b.z0)
                assert overlap_x <= 1e-6 or overlap_z <= 1e-6, (plan.house_id, a, b)


def test_doors_lie_on_shared_walls_and_connect_all_rooms(houses, small_houses, heldout_houses):
    for plan in _all(houses, small_houses, heldout_houses):
        assert room_graph_components(plan) == [sorted(r.room_id for r in plan.rooms)]
        for door in plan.doors:
            a, b = plan.room(door.room_a).rect, plan.room(door.room_b).rect
            d = door.rect
            thin, wide = sorted((d.width, d.depth))
            assert thin == pytest.approx(plan.wall_thickness)
            lo, hi = DOOR_WIDTH if door.kind == "door" else OPENING_WIDTH
            assert lo - 1e-6 <= wide <= hi + 1e-6, (plan.house_id, door)
            cx, cz = d.center
            # the gap's centre line is the boundary between its two rooms
            assert a.contains(cx, cz, 1e-6) and b.contains(cx, cz, 1e-6), (plan.house_id, door)
            for x, z in ((d.x0, d.z0), (d.x1, d.z1)):
                assert a.contains(x, z, margin=plan.wall_thickness) and b.contains(x, z, margin=plan.wall_thickness)
    kinds = collections.Counter(d.kind for p in houses for d in p.doors)
    assert kinds["door"] > 0 and kinds["opening"] > 0


def test_walls_close_every_boundary_except_door_gaps(houses):
    for plan in houses[:4]:
        half = plan.wall_thickness / 2
        for room in plan.rooms:
            r = room.rect
            # sample off the 5 cm grid that room corners and door gaps lie on
            edge_points = [(x, z) for x in np.arange(r.x0 + 0.0137, r.x1, 0.1) for z in (r.z0, r.z1)]
            edge_points += [(x, z) for z in np.arange(r.z0 + 0.0137, r.z1, 0.1) for x in (r.x0, r.x1)]
            for x, z in edge_points:
                in_gap = any(d.rect.contains(x, z) for d in plan.doors)
                in_wall = any(w.rect.contains(x, z) for w in plan.walls)
                assert in_gap != in_wall, (plan.house_id, room.room_id, x, z, in_gap, in_wall)
        for wall in plan.walls:
            assert min(wall.rect.width, wall.rect.depth) == pytest.approx(2 * half)
            assert wall.height == plan.wall_height


# ------------------------------------------------------------------- furniture
def test_objects_are_labelled_inside_their_rooms_and_apart(houses, small_houses, heldout_houses):
    for plan in _all(houses, small_houses, heldout_houses):
        ids = [o.object_id for o in plan.objects]
        assert ids == list(range(len(ids)))
        half = plan.wall_thickness / 2
        for o in plan.objects:
            assert o.label in catalog.OBJECT_LABELS and 1 <= len(o.label.split()) <= 2
            assert o.color_name in catalog.COLOR_NAMES
            assert o.color == catalog.color_rgb(o.color_name, plan.variant_set)
            assert o.yaw_deg in (0, 90, 180, 270) and o.height > 0 and o.y0 >= 0
            r = plan.room(o.room_id).rect
            assert (o.rect.x0 >= r.x0 + half - 1e-6 and o.rect.x1 <= r.x1 - half + 1e-6
                    and o.rect.z0 >= r.z0 + half - 1e-6 and o.rect.z1 <= r.z1 - half + 1e-6), \
                (plan.house_id, o)
        for i, a in enumerate(plan.objects):
            for b in plan.objects[i + 1:]:
                overlap = (min(a.rect.x1, b.rect.x1) - max(a.rect.x0, b.rect.x0),
                           min(a.rect.z1, b.rect.z1) - max(a.rect.z0, b.rect.z0))
                assert min(overlap) <= 0, (plan.house_id, a.label, b.label)


def test_objects_keep_door_clearance_on_both_sides(houses, small_houses, heldout_houses):
    for plan in _all(houses, small_houses, heldout_houses):
        for door in plan.doors:
            for room_id in (door.room_a, door.room_b):
                keep = door_clearance(plan.room(room_id), door, plan.wall_thickness)
                depth = keep.depth if door.rect.width > door.rect.depth else keep.width
                assert depth == pytest.approx(DOOR_CLEARANCE + plan.wall_thickness / 2)
                for o in plan.objects_in(room_id):
                    overlap = (min(o.rect.x1, keep.x1) - max(o.rect.x0, keep.x0),
                               min(o.rect.z1, keep.z1) - max(o.rect.z0, keep.z0))
                    assert min(overlap) <= 0, (plan.house_id, door.door_id, o.label)


def test_rooms_hold_the_furniture_of_their_type(houses):
    must_have = {"bedroom": "bed", "bathroom": "toilet", "kitchen": "fridge",
                 "living room": "sofa", "dining room": "dining table", "office": "desk",
                 "laundry room": "washing machine"}
    for plan in houses:
        for room in plan.rooms:
            labels = {o.label for o in plan.objects_in(room.room_id)}
            if room.room_type in must_have:
                assert must_have[room.room_type] in labels, (plan.house_id, room.room_type, labels)
    labels = collections.Counter(o.label for p in houses for o in p.objects)
    assert len(labels) >= 20, labels


def _free_floor(plan: FloorPlan, radius: float, res: float = 0.05):
    """(free mask, xs, zs) of the house: cells an agent disc of ``radius`` (box-inflated)
    can stand on, ignoring non-obstacle objects."""
    b = plan.bounds
    xs = b.x0 + (np.arange(int(round(b.width / res))) + 0.5) * res
    zs = b.z0 + (np.arange(int(round(b.depth / res))) + 0.5) * res
    free = ((xs[None, :] > b.x0 + radius) & (xs[None, :] < b.x1 - radius)
            & (zs[:, None] > b.z0 + radius) & (zs[:, None] < b.z1 - radius))
    blockers = [w.rect for w in plan.walls] + [o.rect for o in plan.objects if o.is_obstacle]
    for r in blockers:
        free &= ~((xs[None, :] > r.x0 - radius) & (xs[None, :] < r.x1 + radius)
                  & (zs[:, None] > r.z0 - radius) & (zs[:, None] < r.z1 + radius))
    return free, xs, zs


@pytest.mark.parametrize("radius", [0.1, 0.2])
def test_free_floor_is_one_region_reaching_every_room_and_door(houses, small_houses, radius):
    for plan in list(houses[:6]) + list(small_houses[:3]):
        free, xs, zs = _free_floor(plan, radius)
        labels, n = ndimage.label(free)
        sizes = np.bincount(labels.ravel())[1:]
        main = int(np.argmax(sizes)) + 1
        # a grid other than the generator's may cut off a few cells in tight corners
        assert sizes[main - 1] >= 0.99 * free.sum(), (plan.house_id, sorted(sizes)[-3:])
        for room in plan.rooms:
            r = room.rect
            inside = ((xs[None, :] > r.x0) & (xs[None, :] < r.x1) & (zs[:, None] > r.z0) & (zs[:, None] < r.z1))
            assert (inside & (labels == main)).sum() * 0.05 ** 2 > 1.0, (plan.house_id, room.room_id)
        for door in plan.doors:
            cx, cz = door.rect.center
            i, j = int((cz - plan.bounds.z0) / 0.05), int((cx - plan.bounds.x0) / 0.05)
            assert labels[i, j] == main, (plan.house_id, door.door_id)


def test_wall_paint_is_sampled_independently_of_room_type(houses):
    by_type = collections.defaultdict(set)
    for plan in houses:
        for room in plan.rooms:
            assert room.wall_color_name in catalog.WALL_COLOR_NAMES
            assert room.wall_color == catalog.color_rgb(room.wall_color_name, plan.variant_set)
            assert room.floor_material in catalog.FLOOR_MATERIALS
            by_type[room.room_type].add(room.wall_color_name)
    assert len(by_type["bedroom"]) >= 4 and len(by_type["bathroom"]) >= 4, dict(by_type)


def test_heldout_houses_change_shapes_and_shades_but_no_words(houses, heldout_houses):
    standard_variants = {v for s in catalog.FURNITURE.values() for v in s.standard}
    heldout_variants = {v for s in catalog.FURNITURE.values() for v in s.heldout}
    assert not standard_variants & heldout_variants
    for plan in houses:
        assert {o.variant for o in plan.objects} <= standard_variants
    for plan in heldout_houses:
        assert plan.variant_set == "heldout"
        assert {o.variant for o in plan.objects} <= heldout_variants
        for o in plan.objects:
            assert o.label in catalog.OBJECT_LABELS and o.color_name in catalog.COLOR_NAMES
            assert o.color == catalog.HELDOUT_COLOR_SHADES[o.color_name] != catalog.COLOR_NAMES[o.color_name]
        for room in plan.rooms:
            assert room.room_type in ROOM_TYPES and room.floor_material in catalog.FLOOR_MATERIALS
            assert room.floor_color in catalog.FLOOR_LOOKS["heldout"][room.floor_material].colors
    remapped = [m for m in catalog.FLOOR_MATERIALS
                if catalog.floor_pattern(m, "heldout") != catalog.floor_pattern(m, "standard")]
    assert remapped


def test_catalogue_patterns_and_colours_exist():
    for looks in catalog.FLOOR_LOOKS.values():
        for look in looks.values():
            assert look.pattern in MATERIAL_PATTERNS and look.colors
    for variant in catalog.VARIANTS.values():
        for part in variant.parts:
            assert part.pattern in MATERIAL_PATTERNS and part.shape in ("box", "cyl")
            assert part.role == "main" or part.role in catalog.ROLE_COLORS
            assert part.u0 < part.u1 and part.v0 < part.v1 and part.y0 < part.y1
    assert len(catalog.OBJECT_LABELS) == len(set(catalog.OBJECT_LABELS)) >= 20
    assert {"red", "green", "blue", "yellow", "white", "gray", "black", "brown", "orange",
            "purple", "pink", "beige"} <= set(catalog.COLOR_NAMES)


# ------------------------------------------------------------------ files
def test_write_house_writes_glb_and_floorplan(tmp_path):
    plan = generate_house("house_w", 3, size="small")
    scene_id = write_house(plan, str(tmp_path))
    assert scene_id == "house_w/house_w.glb"
    assert (tmp_path / "house_w" / "house_w.glb").stat().st_size > 1000
    json_path = floorplan_path_for(str(tmp_path), scene_id)
    assert json_path == os.path.join(str(tmp_path), "house_w", "house_w.floorplan.json")
    assert FloorPlan.load(json_path).to_json() == plan.to_json()
    assert sorted(os.listdir(tmp_path / "house_w")) == ["house_w.floorplan.json", "house_w.glb"]
    with pytest.raises(ValueError, match="house_w.obj"):
        floorplan_path_for(str(tmp_path), "house_w/house_w.obj")


# ------------------------------------------------------------------------ mesh
@pytest.fixture(scope="module")
def plan_and_mesh(houses):
    return houses[1], build_mesh(houses[1])


def test_mesh_is_valid_and_modest(plan_and_mesh, houses):
    plan, mesh = plan_and_mesh
    assert isinstance(mesh, SceneMesh)
    n = mesh.positions.shape[0]
    assert mesh.indices.max() < n and mesh.indices.shape[0] > 500
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)
    p = mesh.positions.astype(np.float64)[mesh.indices]
    face_normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    area2 = np.linalg.norm(face_normal, axis=1)
    assert (area2 > 1e-8).all(), "degenerate triangles"
    # counter-clockwise winding seen from the side the vertex normal points to
    assert (np.einsum("ij,ij->i", face_normal, mesh.normals[mesh.indices[:, 0]]) > 0).all()
    half = plan.wall_thickness / 2
    b = plan.bounds
    lo, hi = mesh.positions.min(axis=0), mesh.positions.max(axis=0)
    assert np.allclose(lo, [b.x0 - half, 0.0, b.z0 - half], atol=1e-5)
    assert np.allclose(hi, [b.x1 + half, plan.wall_height, b.z1 + half], atol=1e-5)
    assert ((mesh.colors >= 0) & (mesh.colors <= 1)).all()
    assert set(np.unique(mesh.material)) <= set(range(len(MATERIAL_ID)))
    for other in houses:
        assert build_mesh(other).indices.shape[0] < 30000


def test_mesh_furniture_carries_object_ids_within_footprints(plan_and_mesh):
    plan, mesh = plan_and_mesh
    ids = set(np.unique(mesh.object_ids).tolist())
    assert ids == {-1} | {o.object_id for o in plan.objects}
    for o in plan.objects:
        pts = mesh.positions[mesh.object_ids == o.object_id]
        r = o.rect
        assert (pts[:, 0] >= r.x0 - 1e-4).all() and (pts[:, 0] <= r.x1 + 1e-4).all(), o.label
        assert (pts[:, 2] >= r.z0 - 1e-4).all() and (pts[:, 2] <= r.z1 + 1e-4).all(), o.label
        assert pts[:, 1].min() == pytest.approx(o.y0, abs=1e-4)
        assert pts[:, 1].max() == pytest.approx(o.y0 + o.height, abs=1e-4)


def test_mesh_floors_and_walls_take_their_rooms_looks(plan_and_mesh):
    plan, mesh = plan_and_mesh
    structure = mesh.object_ids == -1
    floor = structure & (mesh.positions[:, 1] == 0) & (mesh.normals[:, 1] > 0.99)
    for room in plan.rooms:
        r = room.rect
        look = floor & (mesh.material == MATERIAL_ID[catalog.floor_pattern(room.floor_material, plan.variant_set)]) \
            & np.all(np.isclose(mesh.colors, room.floor_color, atol=1e-6), axis=1)
        for x, z in ((r.x0, r.z0), (r.x0, r.z1), (r.x1, r.z0), (r.x1, r.z1)):
            at = look & np.isclose(mesh.positions[:, 0], x, atol=1e-5) & np.isclose(mesh.positions[:, 2], z, atol=1e-5)
            assert at.any(), (room.room_id, x, z)
    # every wall face is painted like the room just in front of it (exterior: neutral)
    tris = mesh.indices[(mesh.object_ids[mesh.indices[:, 0]] == -1)
                        & (np.abs(mesh.normals[mesh.indices[:, 0], 1]) < 0.01)]
    headers = [d.rect for d in plan.doors]
    checked = 0
    for tri in tris:
        centre = mesh.positions[tri].mean(axis=0) + 0.05 * mesh.normals[tri[0]]
        if any(h.contains(centre[0], centre[2], margin=0.06) for h in headers):
            continue                                  # door headers have their own colour
        assert not any(w.rect.contains(centre[0], centre[2], margin=-1e-3) for w in plan.walls), \
            f"a wall face hidden inside another wall was drawn at {centre}"
        room = plan.room_at(centre[0], centre[2])
        expected = room.wall_color if room is not None else catalog.EXTERIOR_WALL_COLOR
        material = "paint" if room is not None else "plain"
        assert np.allclose(mesh.colors[tri[0]], expected, atol=1e-6), centre
        assert mesh.material[tri[0]] == MATERIAL_ID[material]
        checked += 1
    assert checked > 100
    down = structure & (mesh.normals[:, 1] < -0.99) & np.isclose(mesh.positions[:, 1], plan.wall_height)
    assert down.sum() == 4 and np.allclose(mesh.colors[down], catalog.CEILING_COLOR, atol=1e-6)
