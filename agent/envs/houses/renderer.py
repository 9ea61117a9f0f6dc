"""Headless RGB-D renderer for the houses world: moderngl on EGL (Mesa llvmpipe on the CPU).

One framebuffer with two colour attachments is drawn per frame:

* attachment 0, RGBA8: shaded colour (base vertex colour x lighting x procedural material
  pattern computed from world coordinates, see ``_FRAGMENT_SHADER``);
* attachment 1, R32F: ``DEPTH_MAX_M - planar depth``. The fragment shader writes the
  eye-space z distance along the camera axis exactly (no depth-buffer linearisation);
  storing it *reversed* lets one ``clear(0, 0, 0, 1)`` give black colour and
  "no geometry = DEPTH_MAX_M" depth at once.

The projection flips the image's vertical axis so that GL's bottom-up row order in memory
becomes top-down: row 0 of every returned image is the top of the view, with no copy.

Speed (llvmpipe shades one pixel at a time in SIMD batches, so fragment work dominates):
triangles are re-wound at upload so back faces (by the mesh normals) are culled; they are
grouped by plan cell so each frame draws only cells inside the horizontal view wedge,
nearest first (hidden surfaces then fail the early depth test before shading); every
material shares one branch-free pattern function driven by a parameter table.

Camera convention (agent/envs/base.py): heading ``theta = 0`` faces -Z, positive theta
turns counter-clockwise seen from +Y (TURN_LEFT), the agent's right at theta = 0 is +X.

This module must not import torch: it runs inside environment worker processes.
"""
from __future__ import annotations

import logging
import math
import struct
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import CAMERA_HEIGHT_M, DEPTH_MAX_M, HFOV_DEG
from agent.envs.houses.mesh import MATERIAL_PATTERNS, SceneMesh

logger = logging.getLogger("langnav.renderer")

_MAT4 = struct.Struct("16f")

#: near / far clipping planes (metres); far is well beyond any house so that the depth
#: clip to DEPTH_MAX_M, not the frustum, decides what "far" reads
NEAR_PLANE_M = 0.02
FAR_PLANE_M = 100.0

SYSTEM_PACKAGES_HINT = (
    "the houses renderer needs the system EGL and Mesa OpenGL drivers; on Debian/Ubuntu "
    "install them with: apt-get install -y libegl1 libgl1-mesa-dri"
)


class RendererUnavailableError(RuntimeError):
    """Headless OpenGL (EGL) could not be initialised on this machine."""


_VERTEX_SHADER = """
#version 330 core
uniform mat4 view_projection;
uniform vec3 camera_position;
uniform vec3 camera_forward;
in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;
in int in_material;
out vec3 v_world;
out vec3 v_color;
out float v_planar_depth;
flat out vec3 v_normal;
flat out int v_material;
void main() {
    v_world = in_position;
    v_normal = normalize(in_normal);
    v_color = in_color;
    v_material = in_material;
    // distance along the (horizontal) camera axis: linear in world coordinates, so the
    // perspective-correct interpolation of this varying is exact per pixel
    v_planar_depth = dot(in_position - camera_position, camera_forward);
    gl_Position = view_projection * vec4(in_position, 1.0);
}
"""

# One branch-free pattern for every material, driven by a per-material parameter table
# (PATTERN_PARAMS): llvmpipe shades 8+ pixels at once and would evaluate every branch of a
# per-material if/else chain, so one parametrised code path is several times faster.
_FRAGMENT_SHADER = """
#version 330 core
uniform vec3 camera_position;
uniform float depth_max;
uniform vec4 pattern_cells[NUM_MATERIALS];    // cell_u_m, cell_v_m, row_stagger, seam_m
uniform vec4 pattern_shades[NUM_MATERIALS];   // seam_shade, cell_tint, grain, grain_per_m
uniform vec4 pattern_detail[NUM_MATERIALS];   // speckle, speckle_per_m, weave, sheen
in vec3 v_world;
in vec3 v_color;
in float v_planar_depth;
flat in vec3 v_normal;
flat in int v_material;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_reversed_depth;

const vec3 SUN_DIRECTION = vec3(0.4280, 0.8152, 0.3906);   // unit length

// hash without trigonometry (Hoskins, "Hash without Sine"): cheap on llvmpipe
float hash12(vec2 p) {
    vec3 p3 = fract(vec3(p.xyx) * 0.1031);
    p3 += dot(p3, p3.yzx + 33.33);
    return fract((p3.x + p3.y) * p3.z);
}

float surface_pattern(vec2 uv, vec4 cells, vec4 shades, vec4 detail) {
    // rows of cells along u (planks, tiles, stone courses), each row shifted by a random
    // fraction of a cell (`row_stagger`)
    float row = floor(uv.y / cells.y);
    float along = uv.x / cells.x + cells.z * hash12(vec2(row, 7.0));
    vec2 cell = vec2(floor(along), row);
    vec2 in_cell_m = vec2(fract(along) * cells.x, (uv.y / cells.y - row) * cells.y);
    vec2 to_edge_m = min(in_cell_m, cells.xy - in_cell_m);
    float seam = (min(to_edge_m.x, to_edge_m.y) < cells.w) ? shades.x : 1.0;
    float cell_random = hash12(cell);
    float tint = 1.0 - shades.y * cell_random;
    // wood grain: a wobbly triangle wave across the plank, its phase set per cell
    float grain_phase = uv.y * shades.w + 0.6 * abs(fract(uv.x * 0.45 + cell_random) - 0.5);
    float grain = 1.0 - shades.z * abs(fract(grain_phase) - 0.5) * 2.0;
    float speckle = 1.0 - detail.x * hash12(floor(uv * detail.y));
    float weave = 1.0 - detail.z * mod(cell.x + cell.y, 2.0);
    return seam * tint * grain * speckle * weave;
}

void main() {
    vec3 n = v_normal;
    // pattern coordinates in the surface's own plane
    vec3 an = abs(n);
    vec2 uv = (an.y > 0.5) ? v_world.xz : ((an.x > an.z) ? v_world.zy : v_world.xy);
    vec4 detail = pattern_detail[v_material];
    float pattern = surface_pattern(uv, pattern_cells[v_material], pattern_shades[v_material],
                                    detail);

    vec3 to_camera = camera_position - v_world;
    float inverse_distance = inversesqrt(max(dot(to_camera, to_camera), 1e-8));
    float head_light = abs(dot(n, to_camera)) * inverse_distance;
    float sun = max(dot(n, SUN_DIRECTION), 0.0);
    // ambient + sun + head-light, mildly attenuated with distance (far rooms darker)
    float lighting = (0.30 + 0.35 * sun + 0.45 * head_light)
                     / (1.0 + 0.04 / inverse_distance);
    float h2 = head_light * head_light;
    float h8 = h2 * h2 * h2 * h2;
    float specular = h8 * h8 * h8;                             // head_light^24
    vec3 color = v_color * pattern * lighting * (1.0 + 0.1 * detail.w)
                 + vec3(0.35 * detail.w * specular);
    out_color = vec4(clamp(color, 0.0, 1.0), 1.0);
    out_reversed_depth = max(depth_max - v_planar_depth, 0.0);
}
"""


class PatternParams(NamedTuple):
    """How one SceneMesh material is patterned (see ``surface_pattern`` in the shader)."""

    cell_u_m: float = 1.0        # cell length along u (plank length, tile size), metres
    cell_v_m: float = 1.0        # cell length along v (plank width, course height)
    row_stagger: float = 0.0     # random shift of each row, in cells (0 = aligned grid)
    seam_m: float = 0.0          # half-width of the seam/grout between cells (0 = none)
    seam_shade: float = 1.0      # brightness factor on seams
    cell_tint: float = 0.0       # random per-cell darkening, up to this fraction
    grain: float = 0.0           # depth of the grain stripes
    grain_per_m: float = 0.0     # grain stripes per metre across the cell rows
    speckle: float = 0.0         # fine random darkening, up to this fraction
    speckle_per_m: float = 1.0   # speckle grains per metre
    weave: float = 0.0           # darkening of every other cell (checker: woven threads)
    sheen: float = 0.0           # head-light specular highlight (metal)


#: material name (mesh.MATERIAL_PATTERNS) -> pattern; "plain" and "paint" are flat
PATTERN_PARAMS: Dict[str, PatternParams] = {
    "plain": PatternParams(),
    "wood": PatternParams(cell_u_m=1.2, cell_v_m=0.15, row_stagger=1.0, seam_m=0.005,
                          seam_shade=0.55, cell_tint=0.22, grain=0.12, grain_per_m=28.0),
    "tile": PatternParams(cell_u_m=0.4, cell_v_m=0.4, seam_m=0.01, seam_shade=0.55,
                          cell_tint=0.08),
    "carpet": PatternParams(speckle=0.18, speckle_per_m=90.0),
    "stone": PatternParams(cell_u_m=0.7, cell_v_m=0.45, row_stagger=1.0, seam_m=0.02,
                           seam_shade=0.45, cell_tint=0.32, speckle=0.08, speckle_per_m=40.0),
    "paint": PatternParams(),
    "fabric": PatternParams(cell_u_m=0.02, cell_v_m=0.02, weave=0.1, speckle=0.05,
                            speckle_per_m=50.0),
    "metal": PatternParams(cell_tint=0.0, sheen=1.0),
}
assert tuple(PATTERN_PARAMS) == MATERIAL_PATTERNS, \
    "renderer PATTERN_PARAMS must list mesh.MATERIAL_PATTERNS in order"


_OBJECT_ID_VERTEX_SHADER = """
#version 330 core
uniform mat4 view_projection;
in vec3 in_position;
in int in_object_id;
flat out int v_object_id;
void main() {
    v_object_id = in_object_id;
    gl_Position = view_projection * vec4(in_position, 1.0);
}
"""

_OBJECT_ID_FRAGMENT_SHADER = """
#version 330 core
flat in int v_object_id;
layout(location = 0) out float out_object_id;
void main() {
    // float storage is exact for ids below 2^24; lets clear(-1) mark the background
    out_object_id = float(v_object_id);
}
"""

def view_matrix(camera_position: Sequence[float], heading: float) -> np.ndarray:
    """World-to-camera (4, 4) matrix for a camera at ``camera_position`` with yaw
    ``heading`` (theta = 0 looks down -Z; +theta turns counter-clockwise seen from +Y)."""
    c, s = math.cos(heading), math.sin(heading)
    # camera-to-world rotation R_y(theta) = [[c, 0, s], [0, 1, 0], [-s, 0, c]]; invert it
    rotation_inverse = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    view = np.eye(4)
    view[:3, :3] = rotation_inverse
    view[:3, 3] = -rotation_inverse @ np.asarray(camera_position, dtype=np.float64)
    return view


def projection_matrix(hfov_deg: float, width: int, height: int,
                      near: float = NEAR_PLANE_M, far: float = FAR_PLANE_M) -> np.ndarray:
    """OpenGL perspective (4, 4) matrix from the horizontal FOV, square pixels, with the
    y axis negated so that memory row 0 is the top of the image."""
    tan_half_h = math.tan(math.radians(hfov_deg) / 2.0)
    tan_half_v = tan_half_h * height / width
    proj = np.zeros((4, 4))
    proj[0, 0] = 1.0 / tan_half_h
    proj[1, 1] = -1.0 / tan_half_v           # flip: GL stores rows bottom-up
    proj[2, 2] = -(far + near) / (far - near)
    proj[2, 3] = -2.0 * far * near / (far - near)
    proj[3, 2] = -1.0
    return proj


def vertical_fov_deg(hfov_deg: float, width: int, height: int) -> float:
    """Vertical field of view for square pixels."""
    tan_half_v = math.tan(math.radians(hfov_deg) / 2.0) * height / width
    return math.degrees(2.0 * math.atan(tan_half_v))


#: side of the plan-grid cells (metres) that triangles are grouped by for view culling
CULL_CELL_M = 2.0


def group_triangles_by_cell(positions: np.ndarray, indices: np.ndarray,
                            cell_m: float = CULL_CELL_M
                            ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort triangles by the plan-grid cell of their centroid so that each cell is one
    contiguous index range, and renumber vertices in order of first use so that each
    range also references a compact vertex range (GL drivers such as llvmpipe run the
    vertex shader over the whole [min index, max index] span of a draw call).

    Returns (vertex order (V',) into the input vertices, renumbered sorted indices (M, 3),
    cell triangle ranges (K, 2) as [first triangle, triangle count], cell bounds (K, 4) as
    [x0, z0, x1, z1] of the triangles themselves, which may overhang the cell)."""
    corners = positions[indices]                                  # (M, 3 corners, xyz)
    centroid_xz = corners[:, :, [0, 2]].mean(axis=1)              # (M, 2)
    cell = np.floor((centroid_xz - centroid_xz.min(axis=0)) / cell_m).astype(np.int64)
    cell_key = cell[:, 1] * (int(cell[:, 0].max()) + 1) + cell[:, 0]   # row-major cells
    order = np.argsort(cell_key, kind="stable")
    cell_key, corners, sorted_indices = cell_key[order], corners[order], indices[order]
    starts = np.flatnonzero(np.r_[True, cell_key[1:] != cell_key[:-1]])
    counts = np.diff(np.r_[starts, len(cell_key)])
    lo = np.minimum.reduceat(corners[:, :, [0, 2]].min(axis=1), starts)   # (K, 2)
    hi = np.maximum.reduceat(corners[:, :, [0, 2]].max(axis=1), starts)   # (K, 2)
    bounds = np.concatenate([lo, hi], axis=1)
    used, first_use = np.unique(sorted_indices.ravel(), return_index=True)
    vertex_order = used[np.argsort(first_use, kind="stable")]
    new_number = np.empty(positions.shape[0], dtype=np.uint32)
    new_number[vertex_order] = np.arange(len(vertex_order), dtype=np.uint32)
    return vertex_order, new_number[sorted_indices], np.stack([starts, counts], axis=1), bounds


def cells_in_view(bounds: np.ndarray, eye_xz: Sequence[float], heading: float,
                  half_hfov_rad: float) -> np.ndarray:
    """(K,) bool: which plan rectangles ``bounds`` (K, 4) [x0, z0, x1, z1] can intersect the
    view wedge of a level camera (its left and right frustum planes are vertical, so the
    test is 2-D). Conservative: a rectangle is kept unless all four corners lie outside
    one of the two planes."""
    sin_h, cos_h = math.sin(heading), math.cos(heading)
    c, s = math.cos(half_hfov_rad), math.sin(half_hfov_rad)
    inside = None
    for side in (-1.0, 1.0):
        # inward normal of the right (side -1) / left (side +1) plane: c * forward +
        # side * s * right, with forward = (-sin, -cos) and right = (cos, -sin)
        nx = -c * sin_h + side * s * cos_h
        nz = -c * cos_h - side * s * sin_h
        # the corner of a rectangle furthest along n has x1 (x0) where nx >= 0 (< 0), etc.
        reach = (bounds[:, 2 if nx >= 0.0 else 0] * nx + bounds[:, 3 if nz >= 0.0 else 1] * nz
                 >= nx * eye_xz[0] + nz * eye_xz[1])
        inside = reach if inside is None else inside & reach
    return inside


def orient_triangles_by_normals(positions: np.ndarray, normals: np.ndarray,
                                indices: np.ndarray) -> np.ndarray:
    """(M, 3) indices with each triangle's winding made counter-clockwise seen from the side
    its vertex normals point to, so that back faces can be culled whatever winding the
    mesh builder used."""
    corners = positions[indices].astype(np.float64)                        # (M, 3, 3)
    geometric = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    supplied = normals[indices].sum(axis=1)                                # (M, 3)
    flip = (geometric * supplied).sum(axis=1) < 0.0
    oriented = indices.copy()
    oriented[flip, 1], oriented[flip, 2] = indices[flip, 2], indices[flip, 1]
    return oriented


class _GpuScene:
    """GL buffers and vertex arrays of one uploaded SceneMesh, with its triangles grouped
    by plan cell for view culling."""

    def __init__(self, ctx: Any, mesh: SceneMesh, shade_program: Any, id_program: Any):
        self.num_triangles = int(mesh.indices.shape[0])
        oriented = orient_triangles_by_normals(mesh.positions, mesh.normals, mesh.indices)
        vertex_order, sorted_indices, self.cell_ranges, self.cell_bounds = \
            group_triangles_by_cell(mesh.positions, oriented)
        self.buffers = [
            ctx.buffer(np.ascontiguousarray(attribute[vertex_order]).tobytes())
            for attribute in (mesh.positions, mesh.normals, mesh.colors, mesh.material,
                              mesh.object_ids)
        ]
        positions, normals, colors, material, object_ids = self.buffers
        self.index_buffer = ctx.buffer(np.ascontiguousarray(sorted_indices).tobytes())
        self.shade_vao = ctx.vertex_array(
            shade_program,
            [(positions, "3f", "in_position"), (normals, "3f", "in_normal"),
             (colors, "3f", "in_color"), (material, "1i", "in_material")],
            index_buffer=self.index_buffer, index_element_size=4)
        self.id_vao = ctx.vertex_array(
            id_program,
            [(positions, "3f", "in_position"), (object_ids, "1i", "in_object_id")],
            index_buffer=self.index_buffer, index_element_size=4)

    def visible_index_runs(self, eye_xz: Sequence[float], heading: float,
                           half_hfov_rad: float) -> List[Tuple[int, int]]:
        """[(first index, index count)] of the cells in view, nearest cell first (so that
        the early depth test skips shading hidden surfaces); cells adjacent both in draw
        order and in the index buffer are merged into one run."""
        visible = np.flatnonzero(cells_in_view(self.cell_bounds, eye_xz, heading,
                                               half_hfov_rad))
        bounds = self.cell_bounds[visible]
        # distance from the eye to each cell's rectangle (0 inside it)
        dx = np.maximum(np.maximum(bounds[:, 0] - eye_xz[0], eye_xz[0] - bounds[:, 2]), 0.0)
        dz = np.maximum(np.maximum(bounds[:, 1] - eye_xz[1], eye_xz[1] - bounds[:, 3]), 0.0)
        ranges = self.cell_ranges[visible[np.argsort(dx * dx + dz * dz, kind="stable")]]
        runs: List[Tuple[int, int]] = []
        for first, count in ranges.tolist():
            if runs and runs[-1][0] + runs[-1][1] == 3 * first:
                runs[-1] = (runs[-1][0], runs[-1][1] + 3 * count)
            else:
                runs.append((3 * first, 3 * count))
        return runs

    def release(self) -> None:
        self.shade_vao.release()
        self.id_vao.release()
        self.index_buffer.release()
        for buffer in self.buffers:
            buffer.release()
        self.buffers = []


def create_context(backend: str = "egl") -> Any:
    """A standalone moderngl context; :class:`RendererUnavailableError` if it cannot be
    created (missing libEGL / Mesa driver, or an unknown backend name)."""
    try:
        import moderngl
    except ImportError as e:  # moderngl is a pip dependency of langnav
        raise RendererUnavailableError(
            f"cannot import moderngl ({e}); install langnav's dependencies with pip") from e
    try:
        return moderngl.create_standalone_context(backend=backend)
    except Exception as e:  # glcontext raises plain Exception/ValueError with its reason
        raise RendererUnavailableError(
            f"headless OpenGL context (moderngl backend '{backend}') could not be created: "
            f"{type(e).__name__}: {e}. {SYSTEM_PACKAGES_HINT}") from e


class Renderer:
    """Renders RGB, planar depth and object ids from an agent pose in an uploaded scene.

    Shapes: ``render`` -> rgb uint8 (H, W, 3), depth float32 (H, W, 1) metres in
    [0, DEPTH_MAX_M]; ``render_object_ids`` -> int32 (H, W), -1 = structure/background.

    Triangles facing away from the camera (by their SceneMesh normals) are culled, and
    with ``view_culling`` only the plan cells inside the horizontal view wedge are drawn,
    nearest first; neither changes the image.
    """

    def __init__(self, width: int = 128, height: int = 128, hfov_deg: float = HFOV_DEG,
                 camera_height: float = CAMERA_HEIGHT_M, verbose: bool = False,
                 backend: str = "egl", max_cached_scenes: int = 8,
                 view_culling: bool = True):
        if width <= 0 or height <= 0:
            raise ValueError(f"renderer size must be positive, got {width}x{height}")
        if not 0.0 < hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        if max_cached_scenes < 1:
            raise ValueError(f"max_cached_scenes must be >= 1, got {max_cached_scenes}")
        self.width, self.height = int(width), int(height)
        self.hfov_deg = float(hfov_deg)
        self.vfov_deg = vertical_fov_deg(self.hfov_deg, self.width, self.height)
        self.camera_height = float(camera_height)
        self.max_cached_scenes = int(max_cached_scenes)
        self.view_culling = bool(view_culling)
        self._scenes: "OrderedDict[str, _GpuScene]" = OrderedDict()
        self._pins: Dict[str, int] = {}  # scene key -> pin count (never evicted while > 0)
        self._current: Optional[_GpuScene] = None
        self._current_key: Optional[str] = None
        self.ctx = None
        self.ctx = create_context(backend)
        self.ctx.__enter__()
        self.gl_renderer = self.ctx.info["GL_RENDERER"]
        self.gl_version = self.ctx.info["GL_VERSION"]
        if verbose:
            logger.info("OpenGL renderer: %s; version: %s", self.gl_renderer, self.gl_version)
        self._projection = projection_matrix(self.hfov_deg, self.width, self.height)
        # half the horizontal FOV plus a margin, so rounding never culls a sliver in view
        self._cull_half_hfov_rad = math.radians(self.hfov_deg / 2.0 + 1.0)
        self._build_gl_objects()
        # triangles are made counter-clockwise seen from their front at upload; the
        # projection's y flip mirrors them to clockwise in window coordinates
        self.ctx.front_face = "cw"
        self.ctx.cull_face = "back"

    def _build_gl_objects(self) -> None:
        ctx, size = self.ctx, (self.width, self.height)
        self._shade_program = ctx.program(
            vertex_shader=_VERTEX_SHADER,
            fragment_shader=_FRAGMENT_SHADER.replace("NUM_MATERIALS",
                                                     str(len(MATERIAL_PATTERNS))))
        self._shade_program["depth_max"].value = float(DEPTH_MAX_M)
        table = np.array([PATTERN_PARAMS[name] for name in MATERIAL_PATTERNS],
                         dtype=np.float32)                          # (materials, 12)
        for i, uniform in enumerate(("pattern_cells", "pattern_shades", "pattern_detail")):
            columns = np.ascontiguousarray(table[:, 4 * i:4 * i + 4])   # (materials, vec4)
            self._shade_program[uniform].write(columns.tobytes())
        self._id_program = ctx.program(vertex_shader=_OBJECT_ID_VERTEX_SHADER,
                                       fragment_shader=_OBJECT_ID_FRAGMENT_SHADER)
        self._color_rb = ctx.renderbuffer(size, components=4, dtype="f1")
        self._reversed_depth_rb = ctx.renderbuffer(size, components=1, dtype="f4")
        self._depth_rb = ctx.depth_renderbuffer(size)
        self._fbo = ctx.framebuffer(color_attachments=[self._color_rb, self._reversed_depth_rb],
                                    depth_attachment=self._depth_rb)
        self._id_rb = ctx.renderbuffer(size, components=1, dtype="f4")
        self._id_depth_rb = ctx.depth_renderbuffer(size)
        self._id_fbo = ctx.framebuffer(color_attachments=[self._id_rb],
                                       depth_attachment=self._id_depth_rb)
        self._id_buffer = np.empty((self.height, self.width), dtype=np.float32)

    # ------------------------------------------------------------------ scenes
    def load_scene(self, key: str, mesh: SceneMesh) -> None:
        """Upload ``mesh`` under ``key`` (replacing a scene of that key) and make it current.
        The least recently used unpinned scenes are released beyond ``max_cached_scenes``."""
        self._check_open()
        if mesh.indices.shape[0] == 0:
            raise ValueError(f"scene '{key}': mesh has no triangles")
        if mesh.indices.size and int(mesh.indices.max()) >= mesh.positions.shape[0]:
            raise ValueError(f"scene '{key}': mesh index {int(mesh.indices.max())} out of "
                             f"range for {mesh.positions.shape[0]} vertices")
        if key in self._scenes:
            self._scenes.pop(key).release()
        self._scenes[key] = _GpuScene(self.ctx, mesh, self._shade_program, self._id_program)
        self._evict()
        self.set_scene(key)

    def _evict(self) -> None:
        """Release the least recently used scenes that are not pinned beyond
        ``max_cached_scenes`` of them."""
        unpinned = [k for k in self._scenes if k not in self._pins]  # oldest first
        for key in unpinned[:max(0, len(unpinned) - self.max_cached_scenes)]:
            if key == self._current_key:
                self._current, self._current_key = None, None
            self._scenes.pop(key).release()

    def pin(self, key: str) -> None:
        """Keep scene ``key`` uploaded until as many :meth:`unpin` calls (renderers
        shared by several envs pin the scene each env is in; pinned scenes do not count
        against ``max_cached_scenes``)."""
        if key not in self._scenes:
            raise KeyError(f"renderer has no scene '{key}' loaded; call load_scene first")
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: str) -> None:
        """Undo one :meth:`pin`; the scene stays cached like any unpinned one."""
        left = self._pins.get(key, 0) - 1
        if left > 0:
            self._pins[key] = left
        else:
            self._pins.pop(key, None)
        if self.ctx is not None:
            self._check_open()
            self._evict()

    def has_scene(self, key: str) -> bool:
        return key in self._scenes

    def set_scene(self, key: str) -> None:
        """Make an uploaded scene current (and most recently used)."""
        if key not in self._scenes:
            raise KeyError(f"renderer has no scene '{key}' loaded (cached: "
                           f"{list(self._scenes)}); call load_scene first")
        self._scenes.move_to_end(key)
        self._current, self._current_key = self._scenes[key], key

    @property
    def scene_key(self) -> Optional[str]:
        return self._current_key

    @property
    def num_triangles(self) -> int:
        """Triangles in the current scene (0 if none)."""
        return 0 if self._current is None else self._current.num_triangles

    # ------------------------------------------------------------------ drawing
    def _set_camera(self, program: Any, position: Sequence[float], heading: float) -> None:
        eye = (float(position[0]), float(position[1]) + self.camera_height, float(position[2]))
        # projection @ view_matrix(eye, heading) in closed form (numpy matmuls and
        # conversions cost more than the whole GL draw of a small house)
        c, s = math.cos(heading), math.sin(heading)
        p = self._projection
        p00, p11, p22, p23 = p[0, 0], p[1, 1], p[2, 2], p[2, 3]
        tx, ty, tz = -(c * eye[0] - s * eye[2]), -eye[1], -(s * eye[0] + c * eye[2])
        # column-major, as GLSL expects: columns x, y, z, translation
        columns = (p00 * c, 0.0, p22 * s, -s,
                   0.0, p11, 0.0, 0.0,
                   -p00 * s, 0.0, p22 * c, -c,
                   p00 * tx, p11 * ty, p22 * tz + p23, -tz)
        program["view_projection"].write(_MAT4.pack(*columns))
        if program is self._shade_program:
            program["camera_position"].value = eye
            program["camera_forward"].value = (-s, 0.0, -c)

    def _draw(self, fbo: Any, vao_name: str, program: Any, position: Sequence[float],
              heading: float, clear_value: float) -> None:
        import moderngl
        self._check_open()
        if self._current is None:
            raise RuntimeError("renderer has no current scene; call load_scene/set_scene first")
        vao = getattr(self._current, vao_name)
        self._set_camera(program, position, heading)
        fbo.use()
        fbo.clear(clear_value, clear_value, clear_value, 1.0, depth=1.0)
        self.ctx.enable_only(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        if not self.view_culling:
            vao.render(moderngl.TRIANGLES)
            return
        eye_xz = (float(position[0]), float(position[2]))
        for first, count in self._current.visible_index_runs(eye_xz, heading,
                                                             self._cull_half_hfov_rad):
            vao.render(moderngl.TRIANGLES, vertices=count, first=first)

    def render(self, position: Sequence[float], heading: float,
               depth: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """RGB (H, W, 3) uint8 and planar depth (H, W, 1) float32 metres in
        [0, DEPTH_MAX_M] (DEPTH_MAX_M where nothing is hit) from the agent standing at
        ``position`` (floor level) with ``heading`` radians. ``depth=False`` skips the
        depth read-back and returns ``(rgb, None)``."""
        self._draw(self._fbo, "shade_vao", self._shade_program, position, heading, 0.0)
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self._fbo.read_into(rgb, components=3, attachment=0, alignment=1, dtype="f1")
        if not depth:
            return rgb, None
        depth_m = np.empty((self.height, self.width, 1), dtype=np.float32)
        self._fbo.read_into(depth_m, components=1, attachment=1, alignment=1, dtype="f4")
        # stored reversed (DEPTH_MAX_M - z, cleared to 0): undo in place
        np.subtract(np.float32(DEPTH_MAX_M), depth_m, out=depth_m)
        return rgb, depth_m

    def render_object_ids(self, position: Sequence[float], heading: float) -> np.ndarray:
        """(H, W) int32 ``SceneMesh.object_ids`` of the surface seen at each pixel;
        -1 for floor, walls, ceiling and background."""
        self._draw(self._id_fbo, "id_vao", self._id_program, position, heading, -1.0)
        self._id_fbo.read_into(self._id_buffer, components=1, attachment=0, alignment=1,
                               dtype="f4")
        return np.rint(self._id_buffer).astype(np.int32)

    # ------------------------------------------------------------------ lifetime
    def _check_open(self) -> None:
        """Raise if closed; make this renderer's GL context current, since another
        Renderer in the same thread may have made its own current (cheap when already so)."""
        if self.ctx is None:
            raise RuntimeError("renderer is closed")
        self.ctx.__enter__()

    def close(self) -> None:
        """Release every GL object and the context; safe to call twice."""
        if self.ctx is None:
            return
        self.ctx.__enter__()
        for scene in self._scenes.values():
            scene.release()
        self._scenes.clear()
        self._pins.clear()
        self._current, self._current_key = None, None
        for gl_object in (self._fbo, self._id_fbo, self._color_rb, self._reversed_depth_rb,
                          self._depth_rb, self._id_rb, self._id_depth_rb,
                          self._shade_program, self._id_program):
            gl_object.release()
        self.ctx.release()
        self.ctx = None

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: GL may already be gone
            pass

    def info(self) -> Dict[str, Any]:
        """Renderer configuration and GL strings (for logs and benchmarks)."""
        return {"width": self.width, "height": self.height, "hfov_deg": self.hfov_deg,
                "vfov_deg": self.vfov_deg, "camera_height": self.camera_height,
                "gl_renderer": self.gl_renderer, "gl_version": self.gl_version}
