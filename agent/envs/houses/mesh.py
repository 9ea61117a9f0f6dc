"""Triangle mesh of a house, built from its :class:`FloorPlan`.

The renderer and the glTF exporter both consume :class:`SceneMesh`; the shading
pattern of a surface (wood planks, tiles, carpet, ...) is a per-vertex material id the
renderer turns into a procedural pattern from world coordinates, so no texture files
are needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: procedural surface patterns; index = value stored in ``SceneMesh.material``
MATERIAL_PATTERNS = ("plain", "wood", "tile", "carpet", "stone", "paint", "fabric", "metal")
MATERIAL_ID = {name: i for i, name in enumerate(MATERIAL_PATTERNS)}


@dataclass
class SceneMesh:
    """Unindexed-or-indexed triangle soup. Shapes: positions/normals/colors (N, 3)
    float32, material/object_ids (N,) int32, indices (M, 3) uint32."""

    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray       # base albedo, RGB in [0, 1]
    material: np.ndarray     # index into MATERIAL_PATTERNS
    object_ids: np.ndarray   # SceneObject.object_id, or -1 for floor/walls/ceiling
    indices: np.ndarray

    def __post_init__(self) -> None:
        n = self.positions.shape[0]
        assert self.positions.shape == (n, 3) and self.positions.dtype == np.float32
        assert self.normals.shape == (n, 3) and self.normals.dtype == np.float32
        assert self.colors.shape == (n, 3) and self.colors.dtype == np.float32
        assert self.material.shape == (n,) and self.material.dtype == np.int32
        assert self.object_ids.shape == (n,) and self.object_ids.dtype == np.int32
        assert self.indices.ndim == 2 and self.indices.shape[1] == 3
        assert self.indices.dtype == np.uint32
