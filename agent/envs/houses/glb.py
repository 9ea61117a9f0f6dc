"""glTF 2.0 binary (.glb) export of a :class:`SceneMesh`, written with numpy, json and
struct only, so the bytes are a pure function of the mesh.

Layout: one mesh with one primitive per surface pattern (``MATERIAL_PATTERNS``) that the
mesh uses, each with indexed triangles and the attributes POSITION, NORMAL, COLOR_0
(vertex albedo, float RGB) and ``_OBJECT_ID`` (the SceneObject id as a float, -1 for
structure), and a pbrMetallicRoughness material named after the pattern whose white
base colour the vertex colours multiply. Y-up, metres (glTF's own conventions).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Tuple

import numpy as np

from agent.envs.houses.mesh import MATERIAL_PATTERNS, SceneMesh

_GLB_MAGIC = 0x46546C67          # b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT, _UNSIGNED_INT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4

#: (metallic, roughness) per pattern; vertex colours carry the albedo
_PBR = {"metal": (0.6, 0.4), "tile": (0.0, 0.5), "stone": (0.0, 0.7)}


class _BinaryBuffer:
    """The BIN chunk under construction: buffer views and accessors appended in order."""

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.length = 0
        self.views: List[Dict[str, Any]] = []
        self.accessors: List[Dict[str, Any]] = []

    def add(self, array: np.ndarray, accessor_type: str, target: int,
            with_bounds: bool = False) -> int:
        """Append a little-endian float32/uint32 array; return its accessor index."""
        if array.dtype == np.float32:
            component, data = _FLOAT, array.astype("<f4")
        elif array.dtype == np.uint32:
            component, data = _UNSIGNED_INT, array.astype("<u4")
        else:
            raise TypeError(f"glb: unsupported array dtype {array.dtype}")
        raw = np.ascontiguousarray(data).tobytes()
        self.views.append({"buffer": 0, "byteOffset": self.length, "byteLength": len(raw),
                           "target": target})
        self.chunks.append(raw)
        self.length += len(raw)           # 4-byte components keep every view aligned
        accessor = {"bufferView": len(self.views) - 1, "componentType": component,
                    "count": int(array.shape[0]), "type": accessor_type}
        if with_bounds:
            flat = array.reshape(array.shape[0], -1)
            accessor["min"] = [float(v) for v in flat.min(axis=0)]
            accessor["max"] = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _primitive_groups(mesh: SceneMesh) -> List[Tuple[int, np.ndarray, np.ndarray]]:
    """Per material id in use: (id, vertex ids it uses, its triangles re-indexed)."""
    tri_material = mesh.material[mesh.indices[:, 0]]
    groups = []
    for material_id in np.unique(tri_material):
        tris = mesh.indices[tri_material == material_id]
        used = np.unique(tris)
        remap = np.full(mesh.positions.shape[0], -1, dtype=np.int64)
        remap[used] = np.arange(used.shape[0])
        groups.append((int(material_id), used, remap[tris].astype(np.uint32)))
    return groups


def glb_bytes(mesh: SceneMesh, name: str = "house") -> bytes:
    """The .glb file contents for ``mesh`` (deterministic)."""
    if mesh.indices.shape[0] == 0:
        raise ValueError("glb: the mesh has no triangles")
    if int(mesh.indices.max()) >= mesh.positions.shape[0]:
        raise ValueError("glb: triangle indices point past the vertex arrays")
    buf = _BinaryBuffer()
    primitives, materials = [], []
    for material_id, used, tris in _primitive_groups(mesh):
        pattern = MATERIAL_PATTERNS[material_id]
        attributes = {
            "POSITION": buf.add(mesh.positions[used], "VEC3", _ARRAY_BUFFER, with_bounds=True),
            "NORMAL": buf.add(mesh.normals[used], "VEC3", _ARRAY_BUFFER),
            "COLOR_0": buf.add(np.clip(mesh.colors[used], 0.0, 1.0), "VEC3", _ARRAY_BUFFER),
            "_OBJECT_ID": buf.add(mesh.object_ids[used].astype(np.float32), "SCALAR", _ARRAY_BUFFER),
        }
        indices = buf.add(tris.reshape(-1), "SCALAR", _ELEMENT_ARRAY_BUFFER)
        metallic, roughness = _PBR.get(pattern, (0.0, 0.85))
        primitives.append({"attributes": attributes, "indices": indices,
                           "material": len(materials), "mode": _TRIANGLES})
        materials.append({"name": pattern, "pbrMetallicRoughness": {
            "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": metallic,
            "roughnessFactor": roughness}})
    binary = b"".join(buf.chunks)
    gltf = {
        "asset": {"version": "2.0", "generator": "langnav houses"},
        "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": primitives}],
        "materials": materials,
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": buf.views, "accessors": buf.accessors,
    }
    json_chunk = json.dumps(gltf, separators=(",", ":"), sort_keys=True).encode("utf-8")
    json_chunk += b" " * (-len(json_chunk) % 4)
    binary += b"\x00" * (-len(binary) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", _GLB_MAGIC, 2, total),
        struct.pack("<II", len(json_chunk), _CHUNK_JSON), json_chunk,
        struct.pack("<II", len(binary), _CHUNK_BIN), binary,
    ])


def export_glb(mesh: SceneMesh, path: str) -> None:
    """Write ``mesh`` to ``path`` as glTF 2.0 binary, atomically (tmp file + rename)."""
    data = glb_bytes(mesh)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
