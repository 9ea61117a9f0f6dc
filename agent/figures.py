"""Picture conventions shared by ``langnav data show``, rollout videos, contact sheets and
reward maps: every panel has a title (RGB, depth, map), depth is colour-mapped with a
metres scale bar, the map carries a legend (start, reference path, agent path, agent, goal
and its success radius), and text is set in a real font at a legible size.

Images are uint8 (H, W, 3) numpy arrays; drawing uses PIL (and matplotlib's colour maps
and bundled DejaVu Sans font, both already dependencies).
"""
from __future__ import annotations

import functools
import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.envs.base import DEPTH_MAX_M

WHITE = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (90, 90, 90)
#: font sizes (px): panel titles, legend / scale labels, captions and instructions
TITLE_PX = 16
LABEL_PX = 13
TEXT_PX = 15
#: matplotlib colour map of depth; near is dark, far is bright
DEPTH_CMAP = "magma"
#: depth is mapped through sqrt(d / max): 0-3 m, where most of a house is, gets half the range
DEPTH_TICKS_M = (0.5, 1.0, 2.0, 4.0, 7.0, 10.0)
#: success radius drawn around the goal on every map (VLN-CE's 3 m)
SUCCESS_RADIUS_M = 3.0


@functools.lru_cache(maxsize=16)
def font(size: int) -> Any:
    """DejaVu Sans at ``size`` px (bundled with matplotlib); Pillow's own scalable default
    font, or its bitmap font, where that is missing."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except (ImportError, OSError, ValueError):
        try:
            return ImageFont.load_default(size)   # Pillow >= 10.1
        except TypeError:
            return ImageFont.load_default()


def text_width(text: str, size: int) -> float:
    return float(font(size).getlength(text))


def line_height(size: int) -> int:
    """Pixels from one line of ``size`` px text to the next."""
    return int(math.ceil(size * 1.3))


def wrap_text(text: str, width_px: int, size: int) -> List[str]:
    """``text`` broken at spaces (and newlines) into lines at most ``width_px`` wide."""
    lines: List[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = word if not current else f"{current} {word}"
            if current and text_width(candidate, size) > width_px:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines


def text_block(text: str, width: int, size: int = TEXT_PX, pad: int = 6,
               min_lines: int = 0, color: Tuple[int, int, int] = INK) -> np.ndarray:
    """White block ``width`` px wide holding ``text`` wrapped to it (at least ``min_lines``
    lines tall)."""
    lines = wrap_text(text, width - 2 * pad, size)
    step = line_height(size)
    image = Image.new("RGB", (width, 2 * pad + step * max(len(lines), min_lines)), WHITE)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((pad, pad + step * i), line, fill=color, font=font(size))
    return np.asarray(image)


# ---------------------------------------------------------------------------- depth
def depth_unit(depth_m: np.ndarray, max_depth: float = DEPTH_MAX_M) -> np.ndarray:
    """Depth in metres -> [0, 1] position on the colour map (sqrt scale)."""
    return np.sqrt(np.clip(np.asarray(depth_m, dtype=np.float64) / max_depth, 0.0, 1.0))


@functools.lru_cache(maxsize=4)
def _lut(name: str) -> np.ndarray:
    import matplotlib

    return (255 * matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]).round().astype(np.uint8)


def depth_to_rgb(depth: np.ndarray, max_depth: float = DEPTH_MAX_M) -> np.ndarray:
    """(H, W, 1) or (H, W) metres -> (H, W, 3) uint8 through :data:`DEPTH_CMAP`; read it
    with :func:`depth_scale_bar`."""
    d = depth[..., 0] if depth.ndim == 3 else depth
    return _lut(DEPTH_CMAP)[(255 * depth_unit(d, max_depth)).round().astype(np.int64)]


def depth_scale_bar(width: int, max_depth: float = DEPTH_MAX_M, bar_px: int = 12) -> np.ndarray:
    """A horizontal colour bar of the depth map with tick labels in metres."""
    size = LABEL_PX
    pad = 8
    image = Image.new("RGB", (width, bar_px + line_height(size) + 8), WHITE)
    draw = ImageDraw.Draw(image)
    span = width - 2 * pad
    bar = _lut(DEPTH_CMAP)[(255 * np.sqrt(np.linspace(0.0, 1.0, span))).round().astype(np.int64)]
    image.paste(Image.fromarray(np.repeat(bar[None], bar_px, axis=0)), (pad, 2))
    last_right = -1e9
    for tick in (0.0,) + tuple(t for t in DEPTH_TICKS_M if t <= max_depth):
        x = pad + span * math.sqrt(tick / max_depth)
        label = f"{tick:g} m" if tick == max_depth else f"{tick:g}"
        w = text_width(label, size)
        left = min(max(x - w / 2, 0), width - w)
        draw.line([(x, 2 + bar_px - 4), (x, 2 + bar_px + 1)], fill=INK)
        if left > last_right + 3:
            draw.text((left, 4 + bar_px), label, fill=INK, font=font(size))
            last_right = left + w
    return np.asarray(image)


# ---------------------------------------------------------------------------- map legend
def map_legend(width: int, agent_path: bool = True, agent: bool = True,
               reference_path: bool = True, start: bool = True, goal: bool = True,
               success_radius_m: float = SUCCESS_RADIUS_M) -> np.ndarray:
    """The map's legend, entries wrapped to ``width``: only those the map draws."""
    from agent.envs.houses import topdown as td

    size = LABEL_PX
    entries = []
    if start:
        entries.append(("square", td.START, "start"))
    if reference_path:
        entries.append(("line", td.REFERENCE_PATH, "reference path"))
    if agent_path:
        entries.append(("line", td.AGENT_PATH, "agent path"))
    if agent:
        entries.append(("triangle", td.AGENT, "agent"))
    if goal:
        entries.append(("circle", td.GOAL, f"goal, {success_radius_m:g} m radius"))
    swatch, gap, pad = 16, 12, 6
    rows: List[List[Tuple[str, Tuple[int, int, int], str]]] = [[]]
    used = pad
    for entry in entries:
        need = swatch + 4 + text_width(entry[2], size) + gap
        if rows[-1] and used + need > width - pad:
            rows.append([])
            used = pad
        rows[-1].append(entry)
        used += need
    step = line_height(size) + 2
    image = Image.new("RGB", (width, 2 + step * len(rows)), WHITE)
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(rows):
        x, y = float(pad), 2 + step * r
        cy = y + step / 2 - 1
        for kind, color, label in row:
            if kind == "square":
                draw.rectangle([x + 3, cy - 5, x + 13, cy + 5], fill=color, outline=(0, 0, 0))
            elif kind == "line":
                draw.line([(x, cy), (x + swatch, cy)], fill=color, width=3)
            elif kind == "triangle":
                draw.polygon([(x + 8, cy - 7), (x + 2, cy + 6), (x + 14, cy + 6)], fill=color,
                             outline=(0, 0, 0))
            else:
                draw.ellipse([x + 1, cy - 7, x + 15, cy + 7], outline=color, width=2)
                draw.ellipse([x + 6, cy - 2, x + 10, cy + 2], fill=color)
            x += swatch + 4
            draw.text((x, y), label, fill=INK, font=font(size))
            x += text_width(label, size) + gap
    return np.asarray(image)


# ---------------------------------------------------------------------------- panels
def fit_height(image: np.ndarray, height: int, smooth: bool = False) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, int(round(w * height / h)))
    resample = Image.LANCZOS if smooth else Image.NEAREST
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def scale(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resized by ``factor`` (Lanczos: text stays as legible as its new size)."""
    h, w = image.shape[:2]
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def _title(text: str, width: int) -> np.ndarray:
    image = Image.new("RGB", (width, line_height(TITLE_PX) + 6), WHITE)
    draw = ImageDraw.Draw(image)
    w = text_width(text, TITLE_PX)
    draw.text((max(2.0, (width - w) / 2), 3), text, fill=INK, font=font(TITLE_PX))
    return np.asarray(image)


def stack(images: Sequence[np.ndarray], width: Optional[int] = None) -> np.ndarray:
    """Images one below the other on white, left-aligned, ``width`` wide (default: widest)."""
    width = width or max(i.shape[1] for i in images)
    out = np.full((sum(i.shape[0] for i in images), width, 3), 255, dtype=np.uint8)
    row = 0
    for image in images:
        out[row:row + image.shape[0], :min(width, image.shape[1])] = image[:, :width]
        row += image.shape[0]
    return out


def side_by_side(images: Sequence[np.ndarray], gap: int = 0) -> np.ndarray:
    """Images left to right on white, top-aligned."""
    height = max(i.shape[0] for i in images)
    width = sum(i.shape[1] for i in images) + gap * (len(images) - 1)
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    col = 0
    for image in images:
        out[:image.shape[0], col:col + image.shape[1]] = image
        col += image.shape[1] + gap
    return out


def panel_strip(panels: Sequence[Tuple[str, np.ndarray, Optional[np.ndarray]]],
                height: int = 256, gap: int = 6) -> np.ndarray:
    """Panels side by side: each (title, image, what goes below it or None) with its image
    scaled to ``height`` px and its title above it."""
    columns = []
    for title, image, below in panels:
        body = fit_height(image, height)
        parts = [_title(title, body.shape[1]), body]
        if below is not None:
            parts.append(below)
        columns.append(stack(parts, width=body.shape[1]))
    return side_by_side(columns, gap=gap)


def observation_panels(rgb: np.ndarray, depth: Optional[np.ndarray], topdown: Optional[np.ndarray],
                       height: int = 256, legend: Optional[dict] = None
                       ) -> List[Tuple[str, np.ndarray, Optional[np.ndarray]]]:
    """The standard panels of an observation: RGB, depth with its scale bar, and the map with
    its legend (``legend``: keyword arguments of :func:`map_legend`)."""
    panels: List[Tuple[str, np.ndarray, Optional[np.ndarray]]] = [("RGB (agent's view)", rgb, None)]
    if depth is not None:
        width = fit_height(depth_to_rgb(depth), height).shape[1]
        panels.append(("depth", depth_to_rgb(depth), depth_scale_bar(width)))
    if topdown is not None:
        width = fit_height(topdown, height).shape[1]
        panels.append(("map (top-down)", topdown, map_legend(width, **(legend or {}))))
    return panels
