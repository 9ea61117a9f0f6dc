"""glTF 2.0 binary export: deterministic bytes, a well-formed container, trimesh loads
it with the plan's bounds, and the Khronos glTF-Validator reports no error."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from agent.envs.houses.generator import generate_house, write_house
from agent.envs.houses.glb import export_glb, glb_bytes
from agent.envs.houses.mesh import MATERIAL_PATTERNS, build_mesh

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALIDATE_JS = os.path.join(REPO, "tools", "gltf_validate.js")


@pytest.fixture(scope="module")
def plan():
    return generate_house("house_glb", 4)


@pytest.fixture(scope="module")
def glb_path(plan, tmp_path_factory):
    scenes = tmp_path_factory.mktemp("scenes")
    scene_id = write_house(plan, str(scenes))
    return os.path.join(str(scenes), scene_id)


def _parse_glb(data: bytes):
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_len, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    gltf = json.loads(data[20:20 + json_len].decode("utf-8"))
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert bin_type == 0x004E4942 and bin_len % 4 == 0
    binary = data[28 + json_len:28 + json_len + bin_len]
    assert 28 + json_len + bin_len == len(data)
    return gltf, binary


def _accessor_array(gltf, binary, index):
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    dtype = {5126: "<f4", 5125: "<u4"}[acc["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3}[acc["type"]]
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width,
                        offset=view["byteOffset"] + acc.get("byteOffset", 0))
    return arr.reshape(acc["count"], width)


def test_same_seed_gives_byte_identical_glb(tmp_path, plan, glb_path):
    again = write_house(generate_house("house_glb", 4), str(tmp_path))
    with open(glb_path, "rb") as f:
        first = f.read()
    with open(os.path.join(str(tmp_path), again), "rb") as f:
        assert f.read() == first
    assert glb_bytes(build_mesh(generate_house("house_glb", 5))) != first
    assert not [n for n in os.listdir(os.path.dirname(glb_path)) if ".tmp" in n]


def test_glb_container_accessors_and_materials(plan, glb_path):
    mesh = build_mesh(plan)
    with open(glb_path, "rb") as f:
        gltf, binary = _parse_glb(f.read())
    assert gltf["asset"]["version"] == "2.0"
    assert gltf["buffers"] == [{"byteLength": len(binary)}]
    for view in gltf["bufferViews"]:
        assert view["byteOffset"] % 4 == 0
    prims = gltf["meshes"][0]["primitives"]
    names = [gltf["materials"][p["material"]]["name"] for p in prims]
    assert names == [MATERIAL_PATTERNS[i] for i in np.unique(mesh.material)]
    n_triangles = 0
    for prim in prims:
        attrs = prim["attributes"]
        assert set(attrs) == {"POSITION", "NORMAL", "COLOR_0", "_OBJECT_ID"}
        pos = _accessor_array(gltf, binary, attrs["POSITION"])
        acc = gltf["accessors"][attrs["POSITION"]]
        assert acc["min"] == pos.min(axis=0).tolist() and acc["max"] == pos.max(axis=0).tolist()
        normals = _accessor_array(gltf, binary, attrs["NORMAL"])
        assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
        idx = _accessor_array(gltf, binary, prim["indices"])
        assert idx.max() < pos.shape[0]
        n_triangles += idx.shape[0] // 3
        pbr = gltf["materials"][prim["material"]]["pbrMetallicRoughness"]
        assert pbr["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]
    assert n_triangles == mesh.indices.shape[0]
    ids = np.concatenate([_accessor_array(gltf, binary, p["attributes"]["_OBJECT_ID"])[:, 0] for p in prims])
    assert set(ids.astype(int).tolist()) == {-1} | {o.object_id for o in plan.objects}


def test_trimesh_loads_glb_with_the_plans_bounds(plan, glb_path):
    trimesh = pytest.importorskip("trimesh")
    scene = trimesh.load(glb_path)
    b, half = plan.bounds, plan.wall_thickness / 2
    expected = [[b.x0 - half, 0.0, b.z0 - half], [b.x1 + half, plan.wall_height, b.z1 + half]]
    assert np.allclose(scene.bounds, expected, atol=1e-4)
    n_faces = sum(g.faces.shape[0] for g in scene.geometry.values())
    assert n_faces == build_mesh(plan).indices.shape[0]


def test_export_rejects_an_empty_mesh(tmp_path, plan):
    mesh = build_mesh(plan)
    mesh.indices = mesh.indices[:0]
    with pytest.raises(ValueError, match="no triangles"):
        export_glb(mesh, str(tmp_path / "empty.glb"))
    assert not os.listdir(tmp_path)


def test_khronos_validator_reports_no_errors(glb_path):
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the Khronos glTF-Validator (npm gltf-validator) needs it")
    done = subprocess.run(["node", VALIDATE_JS, glb_path], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 2, (
        "the validator could not run (install it with "
        "`npm install --prefix .node_modules_root gltf-validator` in the repository, or "
        f"point $LANGNAV_NODE_MODULES at a node_modules holding it): {done.stderr}")
    report = json.loads(done.stdout)
    issues = report["issues"]
    assert issues["numErrors"] == 0, issues["messages"]
    assert issues["numWarnings"] == 0, issues["messages"]
    assert done.returncode == 0
    assert report["info"]["totalTriangleCount"] > 500
