"""R2R-style instruction generator for the houses world: ``describe(trajectory, floor
plan, rng)`` -> an :class:`Instruction` (text + the clauses it is made of).

It works for any trajectory (shortest-path experts and an agent's own wandering), so it
also serves as the oracle that relabels agent trajectories. Three stages:

1. :func:`analyse_trajectory` (deterministic): legs of roughly constant heading and the
   turns between them (net heading change; left = heading increases), the sequence of
   rooms walked through, and which objects the camera sees along the way
   (:mod:`agent.datasets.visibility`).
2. Content planning (uses the rng and a style): which turns, rooms, landmarks passed or
   near turns, and the stop (goal room + nearest salient object within ~2 m).
3. Surface realisation: many templates per clause kind, subordinate forms ("once you
   leave the bedroom, ..."), connectors, and 1-5 sentences.

Text uses only lowercase-able words, spaces, commas and full stops, so
``re.findall(r"[a-z]+", text.lower())`` (:func:`instruction_words`) gives its words.
Room types are always named with the words of ``floorplan.ROOM_TYPES``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.datasets.visibility import (VisibilityModel, object_bearing, rect_distance,
                                       visibility_along_path)
from agent.envs.houses.floorplan import FloorPlan, Room, SceneObject

#: content-planning styles; describe_many gives each of its first instructions another one
STYLES = ("detailed", "rooms", "landmarks")

# --------------------------------------------------------------- segmentation thresholds
#: moves whose heading stays within this angle of their leg's mean heading form one leg
LEG_TOLERANCE_DEG = 30.0
#: legs shorter than this (metres walked) are merged into a neighbour (wiggles, jogs)
MIN_LEG_M = 0.75
#: a net heading change above this is a turn, above TURN_AROUND_DEG a turn around
TURN_MIN_DEG = 45.0
TURN_AROUND_DEG = 135.0
#: a turn is sharp when the heading changes by SHARP_TURN_DEG (around: SHARP_AROUND_DEG)
#: between the moves within LOCAL_WINDOW_M before and after it; a gradual bend that
#: changes it by BEND_MIN_DEG to SHARP_TURN_DEG there is said as "bear left"
LOCAL_WINDOW_M = 1.0
SHARP_TURN_DEG = 40.0
SHARP_AROUND_DEG = 110.0
BEND_MIN_DEG = 20.0
#: room runs shorter than this inside a path through one room are boundary flicker
ROOM_FLICKER_M = 0.5

# ------------------------------------------------------------------ landmark thresholds
#: share of an object's footprint samples that must be seen from a pose to name it
MIN_NAMED_FRACTION = 0.3
VISIBLE_RANGE_M = 4.0
STOP_OBJECT_RANGE_M = 2.0
TURN_LANDMARK_RANGE_M = 1.5
PASS_RANGE_M = 1.5


@dataclass
class Clause:
    """One phrase of an instruction and the part of the trajectory it refers to."""

    kind: str                      # "exit", "turn", "bear", "pass", "enter", "go", "stop"
    text: str                      # the phrase exactly as it appears (lowercase) in the text
    room_id: Optional[int] = None
    object_id: Optional[int] = None
    direction: Optional[str] = None  # "left", "right", "around" (turns), side for passes
    step_index: int = 0            # trajectory index the clause refers to


@dataclass
class Instruction:
    text: str
    clauses: List[Clause]


def instruction_words(text: str) -> List[str]:
    """Words of an instruction: lowercase, split on anything that is not a letter."""
    return re.findall(r"[a-z]+", text.lower())


# =============================================================================== analysis
@dataclass
class Turn:
    """A net heading change between two legs; ``angle_deg`` > 0 is a left turn."""

    step_index: int
    angle_deg: float
    direction: str                 # "left", "right" or "around"
    travelled: float               # metres walked before the turn
    is_initial: bool               # turning in place before the first leg
    sharp: bool = True             # False: a gradual bend (said as "bear left")


@dataclass
class RoomVisit:
    room_id: int
    first: int                     # first trajectory index in the room
    last: int                      # last trajectory index in the room
    length: float                  # metres walked inside


@dataclass
class PathAnalysis:
    """Everything the content planner needs about one trajectory. Shapes: positions
    (T, 3), headings (T,), travelled (T,) metres walked up to each index, visibility
    (T, N) seen share of each object (columns follow ``plan.objects``)."""

    positions: np.ndarray
    headings: np.ndarray
    travelled: np.ndarray
    turns: List[Turn]
    rooms: List[RoomVisit]
    room_ids: np.ndarray           # (T,) room of each step after smoothing the visits
    visibility: np.ndarray
    object_index: Dict[int, int]   # object_id -> column of ``visibility``

    def seen_steps(self, object_id: int) -> np.ndarray:
        """Trajectory indices from which the object is seen well enough to be named."""
        col = self.visibility[:, self.object_index[object_id]]
        return np.flatnonzero(col >= MIN_NAMED_FRACTION)


def analyse_trajectory(positions: np.ndarray, headings: np.ndarray, plan: FloorPlan,
                       model: Optional[VisibilityModel] = None) -> PathAnalysis:
    """Segment a trajectory (positions (T, 3), headings (T,) radians) in ``plan``."""
    positions, headings = _validated(positions, headings, plan)
    step_len = np.hypot(np.diff(positions[:, 0]), np.diff(positions[:, 2]))
    travelled = np.concatenate([[0.0], np.cumsum(step_len)])
    visibility = visibility_along_path(plan, positions, headings,
                                       max_range=VISIBLE_RANGE_M, model=model)
    rooms = _room_visits(plan, positions, travelled)
    room_ids = np.zeros(len(positions), dtype=np.int64)
    for visit in rooms:
        room_ids[visit.first:visit.last + 1] = visit.room_id
    return PathAnalysis(
        positions=positions, headings=headings, travelled=travelled,
        turns=_find_turns(headings, step_len, travelled),
        rooms=rooms, room_ids=room_ids, visibility=visibility,
        object_index={o.object_id: i for i, o in enumerate(plan.objects)})


def _validated(positions: np.ndarray, headings: np.ndarray,
               plan: FloorPlan) -> Tuple[np.ndarray, np.ndarray]:
    positions = np.asarray(positions, dtype=np.float64)
    headings = np.asarray(headings, dtype=np.float64).reshape(-1)
    where = f"house {plan.house_id}"
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
        raise ValueError(f"{where}: positions must have shape (T, 3) with T >= 1, "
                         f"got {positions.shape}")
    if headings.shape[0] != positions.shape[0]:
        raise ValueError(f"{where}: {len(headings)} headings for {len(positions)} positions")
    if not (np.isfinite(positions).all() and np.isfinite(headings).all()):
        raise ValueError(f"{where}: trajectory has non-finite positions or headings")
    if not plan.rooms:
        raise ValueError(f"{where}: floor plan has no rooms")
    return positions, headings


def _wrap_deg(a: float) -> float:
    return (a + 180.0) % 360.0 - 180.0


def _circular_mean_deg(angles_deg: np.ndarray, weights: np.ndarray) -> float:
    rad = np.radians(angles_deg)
    return math.degrees(math.atan2(float((weights * np.sin(rad)).sum()),
                                   float((weights * np.cos(rad)).sum())))


def _find_turns(headings: np.ndarray, step_len: np.ndarray, travelled: np.ndarray) -> List[Turn]:
    """Turns between legs: moves (steps that changed the position) are grouped into
    legs of near-constant heading, short legs are merged away, and consecutive legs
    whose mean headings differ by more than TURN_MIN_DEG make a turn. Turning in place
    before the first move is an initial turn."""
    move_steps = np.flatnonzero(step_len > 1e-4)   # move t goes from index t to t + 1
    if len(move_steps) == 0:
        return []
    move_heading = np.degrees(headings[move_steps])
    legs = _merge_legs(_greedy_legs(move_heading), move_heading, step_len[move_steps])
    refs = [_circular_mean_deg(move_heading[a:b + 1], step_len[move_steps][a:b + 1])
            for a, b in legs]
    candidates = []
    initial = _wrap_deg(refs[0] - math.degrees(headings[0]))
    if abs(initial) > TURN_MIN_DEG:
        candidates.append(_make_turn(headings, travelled, 0, int(move_steps[legs[0][0]]),
                                     math.degrees(headings[0]), initial, True))
    for (a0, a1), (b0, _), ref_a, ref_b in zip(legs[:-1], legs[1:], refs[:-1], refs[1:]):
        delta = _wrap_deg(ref_b - ref_a)
        if abs(delta) > TURN_MIN_DEG:
            candidates.append(_make_turn(headings, travelled, int(move_steps[a1]) + 1,
                                         int(move_steps[b0]), ref_a, delta, False))
    turns = []
    for turn in candidates:
        local = _local_turn_deg(headings, step_len, travelled, turn.step_index)
        if turn.direction == "around" and abs(local) >= SHARP_AROUND_DEG:
            turns.append(turn)
            continue
        if local * turn.angle_deg <= 0 or abs(local) < BEND_MIN_DEG:
            continue   # no net change where it is said to happen: not worth a word
        turn.direction = "left" if local > 0 else "right"
        turn.sharp = abs(local) >= SHARP_TURN_DEG
        turns.append(turn)
    return turns


def _local_turn_deg(headings: np.ndarray, step_len: np.ndarray, travelled: np.ndarray,
                    step: int) -> float:
    """Mean heading of the moves within LOCAL_WINDOW_M after ``step`` minus that of the
    moves within LOCAL_WINDOW_M before it (the start heading when there are none),
    degrees, + = left."""
    idx = np.arange(len(step_len))
    moved = step_len > 1e-4
    before = idx[moved & (idx < step) & (travelled[step] - travelled[idx] <= LOCAL_WINDOW_M)]
    after = idx[moved & (idx >= step) & (travelled[idx] - travelled[step] < LOCAL_WINDOW_M)]
    if len(after) == 0:
        return 0.0
    h_after = math.degrees(math.atan2(np.sin(headings[after]).sum(), np.cos(headings[after]).sum()))
    h_before = (math.degrees(math.atan2(np.sin(headings[before]).sum(), np.cos(headings[before]).sum()))
                if len(before) else math.degrees(headings[0]))
    return _wrap_deg(h_after - h_before)


def _greedy_legs(move_heading: np.ndarray) -> List[Tuple[int, int]]:
    """Inclusive move-index ranges; a move further than LEG_TOLERANCE_DEG from the
    running mean of the current leg starts a new leg."""
    legs, start = [], 0
    for i in range(1, len(move_heading)):
        ref = _circular_mean_deg(move_heading[start:i], np.ones(i - start))
        if abs(_wrap_deg(move_heading[i] - ref)) > LEG_TOLERANCE_DEG:
            legs.append((start, i - 1))
            start = i
    legs.append((start, len(move_heading) - 1))
    return legs


def _merge_legs(legs: List[Tuple[int, int]], move_heading: np.ndarray,
                move_len: np.ndarray) -> List[Tuple[int, int]]:
    """Merge the shortest leg under MIN_LEG_M into its neighbour of closest heading,
    then neighbours whose headings became alike, until nothing changes."""
    legs = list(legs)

    def ref(leg: Tuple[int, int]) -> float:
        return _circular_mean_deg(move_heading[leg[0]:leg[1] + 1], move_len[leg[0]:leg[1] + 1])

    def length(leg: Tuple[int, int]) -> float:
        return float(move_len[leg[0]:leg[1] + 1].sum())

    while len(legs) > 1:
        short = [i for i, leg in enumerate(legs) if length(leg) < MIN_LEG_M]
        if short:
            i = min(short, key=lambda j: length(legs[j]))
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(legs)]
            j = min(neighbours, key=lambda n: abs(_wrap_deg(ref(legs[n]) - ref(legs[i]))))
        else:
            alike = [i for i in range(len(legs) - 1)
                     if abs(_wrap_deg(ref(legs[i + 1]) - ref(legs[i]))) <= LEG_TOLERANCE_DEG]
            if not alike:
                break
            i, j = alike[0], alike[0] + 1
        lo, hi = min(i, j), max(i, j)
        legs[lo:hi + 1] = [(legs[lo][0], legs[hi][1])]
    return legs


def _make_turn(headings: np.ndarray, travelled: np.ndarray, first: int, last: int,
               ref_before: float, delta: float, is_initial: bool) -> Turn:
    """The turn's step is where, between ``first`` and ``last``, the agent's heading is
    closest to half-way between the two legs' headings."""
    halfway = ref_before + delta / 2.0
    window = np.arange(first, max(first, last) + 1)
    gaps = [abs(_wrap_deg(math.degrees(headings[t]) - halfway)) for t in window]
    step = int(window[int(np.argmin(gaps))])
    if abs(delta) >= TURN_AROUND_DEG:
        direction = "around"
    else:
        direction = "left" if delta > 0 else "right"
    return Turn(step_index=step, angle_deg=float(delta), direction=direction,
                travelled=float(travelled[step]), is_initial=is_initial)


def _room_ids_per_step(plan: FloorPlan, positions: np.ndarray) -> List[int]:
    ids = []
    for x, _, z in positions:
        room = plan.room_at(float(x), float(z))
        if room is None:  # off the plan (e.g. inside an outer wall): nearest room
            room = min(plan.rooms, key=lambda r: rect_distance(r.rect, float(x), float(z)))
        ids.append(room.room_id)
    return ids


def _room_visits(plan: FloorPlan, positions: np.ndarray, travelled: np.ndarray) -> List[RoomVisit]:
    """Runs of one room along the path; an inner run shorter than ROOM_FLICKER_M between
    two runs of the same room is flicker at a boundary and joins them."""
    ids = _room_ids_per_step(plan, positions)
    runs: List[List[int]] = []          # [room_id, first, last]
    for t, rid in enumerate(ids):
        if runs and runs[-1][0] == rid:
            runs[-1][2] = t
        else:
            runs.append([rid, t, t])

    def walked(run: List[int]) -> float:
        end = min(run[2] + 1, len(travelled) - 1)
        return float(travelled[end] - travelled[run[1]])

    changed = True
    while changed:
        changed = False
        for i in range(1, len(runs) - 1):
            if runs[i - 1][0] == runs[i + 1][0] and walked(runs[i]) < ROOM_FLICKER_M:
                runs[i - 1:i + 2] = [[runs[i - 1][0], runs[i - 1][1], runs[i + 1][2]]]
                changed = True
                break
    return [RoomVisit(room_id=r, first=a, last=b, length=walked([r, a, b])) for r, a, b in runs]


# ======================================================================== referring words
_MATERIAL_WORDS = {"wood": "wooden", "tile": "tiled", "carpet": "carpeted"}


def _clean(word: str) -> str:
    """Lowercase letters and single spaces only, so the text tokenises predictably."""
    return " ".join(re.findall(r"[a-z]+", str(word).lower()))


class _Namer:
    """Referring expressions for rooms and objects of one floor plan."""

    def __init__(self, plan: FloorPlan):
        self.plan = plan
        self.rooms = {r.room_id: r for r in plan.rooms}
        self.objects = {o.object_id: o for o in plan.objects}
        self._salience = {o.object_id: self._compute_salience(o) for o in plan.objects}

    # rooms ---------------------------------------------------------------------------
    def room_type(self, room_id: int) -> str:
        return _clean(self.rooms[room_id].room_type)

    def room_attribute(self, room_id: int) -> Optional[str]:
        """A wall colour or floor phrase telling this room from others of its type,
        None when the type is unique or nothing tells them apart."""
        room = self.rooms[room_id]
        same = [r for r in self.plan.rooms if r.room_type == room.room_type]
        if len(same) == 1:
            return None
        colour = _clean(room.wall_color_name)
        floor = _clean(room.floor_material)
        floor = _MATERIAL_WORDS.get(floor, floor)
        if colour and sum(_clean(r.wall_color_name) == colour for r in same) == 1:
            return f"with {colour} walls"
        if floor and sum(_clean(r.floor_material) == _clean(room.floor_material) for r in same) == 1:
            return f"with the {floor} floor"
        if colour and floor and sum(_clean(r.wall_color_name) == colour
                                    and r.floor_material == room.floor_material
                                    for r in same) == 1:
            return f"with {colour} walls and a {floor} floor"
        return None

    def room(self, room_id: int, rng: np.random.Generator, attribute_p: float = 1.0) -> str:
        """``the kitchen`` / ``the bedroom with green walls``."""
        words = f"the {self.room_type(room_id)}"
        attribute = self.room_attribute(room_id)
        if attribute and rng.random() < attribute_p:
            return f"{words} {attribute}"
        return words

    # objects -------------------------------------------------------------------------
    def object_salience(self, object_id: int) -> int:
        """0 = label unique in the house, 1 = colour + label unique in the house,
        2 = label unique in its room, 3 = colour + label unique in its room,
        4 = ambiguous (lower is more distinctive)."""
        return self._salience[object_id]

    def _compute_salience(self, obj: SceneObject) -> int:
        house = self.plan.objects
        room = [o for o in house if o.room_id == obj.room_id]
        label = _clean(obj.label)
        colour = _clean(obj.color_name)

        def count(objs: Sequence[SceneObject], with_colour: bool) -> int:
            return sum(_clean(o.label) == label and (not with_colour or _clean(o.color_name) == colour)
                       for o in objs)

        for level, (objs, with_colour) in enumerate(((house, False), (house, True),
                                                     (room, False), (room, True))):
            if count(objs, with_colour) == 1:
                return level
        return 4

    def object(self, object_id: int, rng: np.random.Generator, with_room: bool = True) -> str:
        """``the green plant`` / ``the plant in the kitchen``; the room is added when the
        object is not unique in the house (and ``with_room``)."""
        obj = self.objects[object_id]
        label, colour = _clean(obj.label), _clean(obj.color_name)
        level = self.object_salience(object_id)
        use_colour = level in (1, 3, 4) or (colour != "" and rng.random() < 0.5)
        core = f"the {colour} {label}" if use_colour and colour else f"the {label}"
        if with_room and level >= 2:
            core = f"{core} in the {self.room_type(obj.room_id)}"
        return core


# ================================================================================ content
@dataclass
class _Event:
    """A clause before it is worded."""

    kind: str
    step_index: int
    room_id: Optional[int] = None
    object_id: Optional[int] = None
    direction: Optional[str] = None      # turn direction
    side: Optional[str] = None           # pass side or exit door side phrase
    door_word: Optional[str] = None
    variant: str = ""                    # "into", "at", "hall", "straight", "front" ...


def _plan_events(a: PathAnalysis, plan: FloorPlan, namer: _Namer, rng: np.random.Generator,
                 style: str) -> List[_Event]:
    """Choose what to say, in path order, for one style."""
    events: List[_Event] = []
    used_objects: set = set()
    stop = _stop_event(a, plan, namer)
    if stop.object_id is not None:
        used_objects.add(stop.object_id)
    room_events = _room_events(a, plan, namer)
    turns = [t for t in a.turns if not _near_end(a, t.step_index)]
    consumed_rooms = set()
    for turn in turns:
        ev = _Event("turn" if turn.sharp else "bear", turn.step_index, direction=turn.direction)
        entered = None if turn.is_initial else _room_entered_at(a, turn)
        if entered in consumed_rooms:
            entered = None   # another turn already leads into that room
        if entered is not None and (style == "rooms" or rng.random() < 0.6):
            ev.variant, ev.room_id = "into", a.rooms[entered].room_id
            consumed_rooms.add(entered)
        elif not turn.is_initial and rng.random() < {"landmarks": 0.9, "detailed": 0.4}.get(style, 0.0):
            obj = _turn_landmark(a, plan, namer, turn, used_objects)
            if obj is not None:
                ev.variant, ev.object_id = "at", obj
                used_objects.add(obj)
        keep = (turn.is_initial or ev.variant == "into" or style != "rooms")
        if keep:
            events.append(ev)
    for visit_index, ev in room_events:
        if visit_index in consumed_rooms and ev.kind != "exit":
            continue
        if ev.kind == "go" and style == "landmarks" and rng.random() < 0.5:
            continue
        events.append(ev)
    n_pass = {"detailed": 1, "landmarks": 2, "rooms": 0}[style]
    for obj, step in _pass_landmarks(a, plan, namer, used_objects, rng, n_pass):
        events.append(_Event("pass", step, object_id=obj, room_id=namer.objects[obj].room_id,
                             side=_pass_side(a, namer.objects[obj], step)))
    if style == "detailed":
        events.extend(_straight_events(a, events))
    # stable order along the path; at one index: exit/turn before entering, stop last
    order = {"turn": 0, "bear": 0, "exit": 1, "go": 3, "enter": 3, "pass": 4, "stop": 9}
    events.sort(key=lambda e: (e.step_index, 2 if e.variant == "into" else order[e.kind]))
    for i, ev in enumerate(events):
        if ev.kind == "exit" and i > 0:
            ev.side = None   # the door's side is relative to the start pose only
    events.append(stop)
    return events


def _near_end(a: PathAnalysis, step: int) -> bool:
    """Turns in the last half metre only face the goal; the stop clause covers them."""
    return a.travelled[-1] - a.travelled[step] < 0.5


def _room_entered_at(a: PathAnalysis, turn: Turn) -> Optional[int]:
    """Index of the room visit entered within ~1.5 m after (or 0.75 m before) a turn;
    a turn still inside the start room does not lead into the next room (leaving the
    start room is said in between)."""
    for i, visit in enumerate(a.rooms[1:], start=1):
        gap = a.travelled[visit.first] - turn.travelled
        if -0.75 <= gap <= 1.5 and (i > 1 or turn.step_index >= a.rooms[0].last):
            return i
    return None


def _room_events(a: PathAnalysis, plan: FloorPlan, namer: _Namer) -> List[Tuple[int, _Event]]:
    """Exit of the start room, walking through intermediate rooms, entering the last."""
    out: List[Tuple[int, _Event]] = []
    if len(a.rooms) < 2:
        return out
    start = a.rooms[0]
    exit_ev = _Event("exit", start.last, room_id=start.room_id)
    if namer.room_type(start.room_id) == "hallway":
        exit_ev.variant = "hall"
    elif not any(t.is_initial for t in a.turns):
        door = _door_between(plan, a, start.last)
        if door is not None:
            exit_ev.side = _door_side(a, door)
            exit_ev.door_word = "door" if door.kind == "door" else "opening"
    out.append((0, exit_ev))
    for i, visit in enumerate(a.rooms[1:], start=1):
        # a room the path was in before is gone "back" into
        back = any(v.room_id == visit.room_id for v in a.rooms[:i])
        if i == len(a.rooms) - 1:
            out.append((i, _Event("enter", visit.first, room_id=visit.room_id,
                                  variant="back" if back else "")))
        elif visit.length >= 0.5:
            hall = namer.room_type(visit.room_id) == "hallway"
            out.append((i, _Event("go", visit.first, room_id=visit.room_id,
                                  variant="back" if back else ("hall" if hall else ""))))
    return out


def _door_between(plan: FloorPlan, a: PathAnalysis, last_in_start: int):
    """The door nearest to where the path leaves its start room (within 1 m)."""
    t = min(last_in_start + 1, len(a.positions) - 1)
    mid = (a.positions[last_in_start] + a.positions[t]) / 2.0
    best, best_d = None, 1.0
    for door in plan.doors:
        d = rect_distance(door.rect, float(mid[0]), float(mid[2]))
        if d < best_d:
            best, best_d = door, d
    return best


def _door_side(a: PathAnalysis, door) -> str:
    cx, cz = door.rect.center
    x, z = a.positions[0, 0], a.positions[0, 2]
    towards = math.degrees(math.atan2(-(cx - x), -(cz - z)))
    rel = _wrap_deg(towards - math.degrees(a.headings[0]))
    if abs(rel) <= 35.0:
        return "in front of you"
    if 55.0 <= rel <= 125.0:
        return "on your left"
    if -125.0 <= rel <= -55.0:
        return "on your right"
    if abs(rel) >= 145.0:
        return "behind you"
    return ""


def _turn_landmark(a: PathAnalysis, plan: FloorPlan, namer: _Namer, turn: Turn,
                   used: set) -> Optional[int]:
    """The most distinctive object near the turn point that was seen on the way to it."""
    x, z = a.positions[turn.step_index, 0], a.positions[turn.step_index, 2]
    turn_room = a.room_ids[turn.step_index]
    best, best_key = None, None
    for obj in plan.objects:
        # an object behind the wall of another room is no landmark for this corner
        if obj.object_id in used or obj.room_id != turn_room:
            continue
        d = rect_distance(obj.rect, float(x), float(z))
        if d > TURN_LANDMARK_RANGE_M or namer.object_salience(obj.object_id) > 3:
            continue
        seen = a.seen_steps(obj.object_id)
        near = seen[np.abs(a.travelled[seen] - turn.travelled) <= 2.0]
        if len(near) == 0 or near.min() > turn.step_index + 2:
            continue
        key = (namer.object_salience(obj.object_id), d)
        if best_key is None or key < best_key:
            best, best_key = obj.object_id, key
    return best


def _pass_landmarks(a: PathAnalysis, plan: FloorPlan, namer: _Namer, used: set,
                    rng: np.random.Generator, n: int) -> List[Tuple[int, int]]:
    """Up to ``n`` distinctive objects the path walks close by (away from its ends),
    seen before the closest approach; (object_id, step of the closest approach)."""
    if n <= 0 or len(a.positions) < 2:
        return []
    total = a.travelled[-1]
    cands = []
    for obj in plan.objects:
        if obj.object_id in used or namer.object_salience(obj.object_id) > 3:
            continue
        r = obj.rect
        dx = np.maximum.reduce([r.x0 - a.positions[:, 0], np.zeros(len(a.positions)),
                                a.positions[:, 0] - r.x1])
        dz = np.maximum.reduce([r.z0 - a.positions[:, 2], np.zeros(len(a.positions)),
                                a.positions[:, 2] - r.z1])
        dist = np.hypot(dx, dz)
        step = int(np.argmin(dist))
        if dist[step] > PASS_RANGE_M or not (1.0 <= a.travelled[step] <= total - 1.5):
            continue
        seen = a.seen_steps(obj.object_id)
        # seen on the way up to it, not only glimpsed from afar or through a far door
        approach = seen[(seen <= step) & (a.travelled[step] - a.travelled[seen] <= 2.0)]
        if len(approach) == 0:
            continue
        cands.append((namer.object_salience(obj.object_id) + float(rng.random()), obj.object_id, step))
    cands.sort()
    chosen: List[Tuple[int, int]] = []
    for _, oid, step in cands:
        if all(abs(a.travelled[step] - a.travelled[s]) > 1.0 for _, s in chosen):
            chosen.append((oid, step))
        if len(chosen) == n:
            break
    return chosen


def _pass_side(a: PathAnalysis, obj: SceneObject, step: int) -> Optional[str]:
    """Left/right when the object is clearly beside the agent at its closest approach."""
    bearing = math.degrees(object_bearing(obj, a.positions[step], float(a.headings[step])))
    if 50.0 <= bearing <= 130.0:
        return "left"
    if -130.0 <= bearing <= -50.0:
        return "right"
    return None


def _straight_events(a: PathAnalysis, events: List[_Event]) -> List[_Event]:
    """``go straight`` for the longest stretch (>= 4 m) that no other clause covers."""
    marks = sorted([0.0, float(a.travelled[-1])] + [float(a.travelled[e.step_index]) for e in events])
    gaps = [(hi - lo, lo) for lo, hi in zip(marks[:-1], marks[1:])]
    if not gaps or max(gaps)[0] < 4.0:
        return []
    step = int(np.searchsorted(a.travelled, max(gaps)[1] + 0.5))
    return [_Event("go", min(step, len(a.travelled) - 1), variant="straight")]


def _stop_event(a: PathAnalysis, plan: FloorPlan, namer: _Namer) -> _Event:
    """Goal room and the nearest salient object of that room within STOP_OBJECT_RANGE_M
    of the final position that the path saw (any object there when none is salient)."""
    last = len(a.positions) - 1
    goal_room = a.rooms[-1].room_id
    x, z = float(a.positions[-1, 0]), float(a.positions[-1, 2])
    near = []
    for obj in plan.objects:
        d = rect_distance(obj.rect, x, z)
        if obj.room_id == goal_room and d <= STOP_OBJECT_RANGE_M and len(a.seen_steps(obj.object_id)):
            near.append((d, obj))
    ev = _Event("stop", last, room_id=goal_room)
    if not near:
        ev.variant = _stop_position(a, plan.room(goal_room))
        return ev
    salient = [(d, o) for d, o in near if namer.object_salience(o.object_id) <= 3]
    d, obj = min(salient or near, key=lambda p: p[0])
    ev.object_id = obj.object_id
    bearing = math.degrees(object_bearing(obj, a.positions[-1], float(a.headings[-1])))
    if d <= 1.5 and abs(bearing) <= 35.0 and a.visibility[-1, a.object_index[obj.object_id]] > 0:
        ev.variant = "front"
    return ev


def _stop_position(a: PathAnalysis, room: Room) -> str:
    """Where in the goal room the path ends when no object marks it: "inside" (just
    through the door), "middle" (near the room's centre) or "" (nothing to say)."""
    x, z = float(a.positions[-1, 0]), float(a.positions[-1, 2])
    last = a.rooms[-1]
    if len(a.rooms) > 1 and last.length <= 1.5:
        return "inside"
    cx, cz = room.rect.center
    if math.hypot(x - cx, z - cz) <= max(0.75, 0.2 * min(room.rect.width, room.rect.depth)):
        return "middle"
    return ""


# ============================================================================= templates
#: main (imperative) and subordinate forms per clause kind; {room} and {obj} include
#: their article, {dir} is left/right, {side} a side phrase, {door} door/opening
TEMPLATES: Dict[str, Tuple[str, ...]] = {
    "exit": ("leave {room}", "exit {room}", "walk out of {room}", "go out of {room}",
             "head out of {room}", "step out of {room}", "get out of {room}",
             "make your way out of {room}", "move out of {room}"),
    "exit_door": ("leave {room} through the {door} {side}", "exit {room} through the {door} {side}",
                  "walk out of {room} through the {door} {side}",
                  "go through the {door} {side} to leave {room}",
                  "take the {door} {side} out of {room}", "use the {door} {side} to exit {room}",
                  "head out of {room} through the {door} {side}"),
    "exit_hall": ("walk down {room}", "go along {room}", "follow {room}", "head down {room}",
                  "leave {room}", "walk along {room}"),
    "exit_sub": ("once you leave {room}", "after leaving {room}", "after you exit {room}",
                 "once out of {room}", "when you are out of {room}", "as soon as you exit {room}"),
    "turn": ("turn {dir}", "make a {dir}", "take a {dir}", "make a {dir} turn", "take a {dir} turn",
             "hang a {dir}", "go {dir}", "turn to the {dir}", "turn to your {dir}", "head {dir}"),
    "turn_around": ("turn around", "turn all the way around", "make a u turn", "turn back",
                    "spin around", "do a u turn", "turn around to face the other way"),
    "turn_at": ("at {obj} turn {dir}", "turn {dir} at {obj}", "make a {dir} at {obj}",
                "when you reach {obj}, turn {dir}", "turn {dir} by {obj}",
                "take a {dir} near {obj}", "once you get to {obj}, make a {dir}",
                "turn {dir} when you get to {obj}"),
    "turn_around_at": ("at {obj} turn around", "turn around at {obj}", "turn around by {obj}",
                       "when you reach {obj}, turn around"),
    "turn_into": ("turn {dir} into {room}", "make a {dir} into {room}", "take a {dir} into {room}",
                  "go {dir} into {room}", "turn {dir} and enter {room}",
                  "turn {dir} and go into {room}", "hang a {dir} into {room}"),
    "turn_around_into": ("turn around and go into {room}", "turn around and enter {room}",
                         "turn back into {room}"),
    "turn_sub": ("after turning {dir}", "once you turn {dir}", "after you make a {dir}"),
    "bear": ("bear {dir}", "veer {dir}", "curve {dir}", "swing {dir}", "turn slightly {dir}",
             "go slightly {dir}", "keep {dir}", "follow the path to the {dir}"),
    "bear_into": ("bear {dir} into {room}", "veer {dir} into {room}", "curve {dir} into {room}",
                  "go slightly {dir} into {room}", "keep {dir} into {room}"),
    "bear_at": ("bear {dir} at {obj}", "veer {dir} near {obj}", "curve {dir} by {obj}",
                "keep {dir} at {obj}"),
    "pass": ("walk past {obj}", "go past {obj}", "pass {obj}", "continue past {obj}",
             "move past {obj}", "head past {obj}", "walk by {obj}", "go by {obj}",
             "keep going past {obj}", "pass by {obj}"),
    "pass_side": ("walk past {obj} on your {side}", "pass {obj} on your {side}",
                  "go past {obj} on your {side}", "keep {obj} on your {side}",
                  "walk with {obj} on your {side}", "continue with {obj} on your {side}"),
    "pass_sub": ("after passing {obj}", "once you pass {obj}", "when you have passed {obj}",
                 "once past {obj}"),
    "go": ("walk through {room}", "go through {room}", "cross {room}", "head through {room}",
           "continue through {room}", "pass through {room}", "move through {room}",
           "walk across {room}", "go across {room}", "make your way through {room}"),
    "go_hall": ("walk down {room}", "go down {room}", "head down {room}", "walk along {room}",
                "follow {room}", "continue down {room}", "go along {room}", "walk through {room}"),
    "go_sub": ("after crossing {room}", "once through {room}", "after walking through {room}",
               "after going through {room}"),
    "go_hall_sub": ("at the end of {room}", "after walking down {room}", "once through {room}"),
    "go_straight": ("walk straight", "go straight ahead", "keep walking straight",
                    "continue straight", "walk forward", "head straight", "keep going forward",
                    "move straight ahead", "go forward"),
    "enter": ("go into {room}", "enter {room}", "walk into {room}", "head into {room}",
              "step into {room}", "move into {room}", "continue into {room}",
              "make your way into {room}", "proceed into {room}"),
    "go_back": ("walk back through {room}", "go back through {room}", "cross {room} again",
                "head back through {room}", "go back along {room}"),
    "enter_back": ("go back into {room}", "return to {room}", "walk back into {room}",
                   "head back into {room}", "go into {room} again"),
    "enter_sub": ("once you are in {room}", "once inside {room}", "when you reach {room}",
                  "after entering {room}", "once you enter {room}", "when you get to {room}"),
    "stop_obj": ("stop {prep} {obj} in {room}", "wait {prep} {obj} in {room}",
                 "stand {prep} {obj} in {room}", "stop in {room} {prep} {obj}",
                 "wait in {room} {prep} {obj}", "come to a stop {prep} {obj} in {room}",
                 "stop once you reach {obj} in {room}", "stop when you get to {obj} in {room}",
                 "stop and wait {prep} {obj} in {room}", "end {prep} {obj} in {room}"),
    "stop_room": ("stop in {room}", "wait in {room}", "stop once you are in {room}",
                  "stop inside {room}", "wait inside {room}", "come to a stop in {room}",
                  "stop and wait in {room}", "end in {room}", "stop as soon as you are in {room}",
                  "wait there in {room}"),
    "stop_inside": ("stop just inside {room}", "stop as soon as you enter {room}",
                    "wait just inside {room}", "stop right after you enter {room}",
                    "stop once you step into {room}"),
    "stop_middle": ("stop in the middle of {room}", "wait in the middle of {room}",
                    "stand in the middle of {room}", "stop when you reach the middle of {room}"),
}
STOP_PREPOSITIONS = ("by", "next to", "near", "beside", "close to")
#: joins two main clauses inside a sentence
CONNECTORS = (" and ", ", then ", " and then ", ", ", " then ")
#: optional openers of a sentence after the first
SENTENCE_OPENERS = ("", "", "", "then ", "next, ", "now ", "after that, ")


def template_count() -> int:
    """Number of clause templates (all kinds and forms)."""
    return sum(len(v) for v in TEMPLATES.values())


def template_words() -> List[str]:
    """Every word the generator can write that does not come from a floor plan's object
    labels and colour names: template words, connectors, side and door phrases, room
    types, floor-material adjectives (sorted)."""
    from agent.envs.houses.floorplan import ROOM_TYPES
    texts = [t for group in TEMPLATES.values() for t in group]
    texts += list(STOP_PREPOSITIONS) + list(CONNECTORS) + list(SENTENCE_OPENERS) + list(ROOM_TYPES)
    texts += ["in front of you on your left on your right behind you door opening",
              "with walls with the floor with walls and a floor", "the in",
              "left right"] + list(_MATERIAL_WORDS.values())
    try:
        from agent.envs.houses.catalog import FLOOR_MATERIALS
        texts += [_MATERIAL_WORDS.get(m, m) for m in FLOOR_MATERIALS]
    except ImportError:  # the catalogue is optional for hand-built plans
        pass
    words = set()
    for t in texts:
        words.update(instruction_words(re.sub(r"\{[a-z]+\}", " ", t)))
    return sorted(words)


def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _word_event(ev: _Event, namer: _Namer, rng: np.random.Generator) -> Tuple[str, Optional[str]]:
    """Main phrase and subordinate phrase (None when the kind has none) of an event."""
    room = namer.room(ev.room_id, rng, attribute_p=1.0 if ev.kind in ("enter", "stop") else 0.5) \
        if ev.room_id is not None else ""
    obj = namer.object(ev.object_id, rng, with_room=ev.kind != "stop") \
        if ev.object_id is not None else ""
    fields = dict(room=room, obj=obj, dir=ev.direction or "", side=ev.side or "",
                  door=ev.door_word or "door")
    kind = ev.kind
    if kind == "exit":
        if ev.variant == "hall":
            main = _choice(rng, TEMPLATES["exit_hall"])
        elif ev.side:
            main = _choice(rng, TEMPLATES["exit_door"] + TEMPLATES["exit"][:2])
        else:
            main = _choice(rng, TEMPLATES["exit"])
        sub = None if ev.variant == "hall" else _choice(rng, TEMPLATES["exit_sub"])
    elif kind == "turn":
        around = ev.direction == "around"
        key = {"into": "turn_into", "at": "turn_at"}.get(ev.variant, "turn")
        main = _choice(rng, TEMPLATES[key.replace("turn", "turn_around", 1) if around else key])
        sub = None if around or ev.variant else _choice(rng, TEMPLATES["turn_sub"])
    elif kind == "bear":
        key = {"into": "bear_into", "at": "bear_at"}.get(ev.variant, "bear")
        main, sub = _choice(rng, TEMPLATES[key]), None
    elif kind == "pass":
        main = _choice(rng, TEMPLATES["pass_side"] if ev.side else TEMPLATES["pass"])
        sub = _choice(rng, TEMPLATES["pass_sub"])
    elif kind == "go" and ev.variant == "straight":
        main, sub = _choice(rng, TEMPLATES["go_straight"]), None
    elif kind == "go" and ev.variant == "back":
        main, sub = _choice(rng, TEMPLATES["go_back"]), _choice(rng, TEMPLATES["go_sub"])
    elif kind == "enter" and ev.variant == "back":
        main, sub = _choice(rng, TEMPLATES["enter_back"]), _choice(rng, TEMPLATES["enter_sub"])
    elif kind == "go":
        hall = ev.variant == "hall"
        main = _choice(rng, TEMPLATES["go_hall" if hall else "go"])
        sub = _choice(rng, TEMPLATES["go_hall_sub" if hall else "go_sub"])
    elif kind == "enter":
        main, sub = _choice(rng, TEMPLATES["enter"]), _choice(rng, TEMPLATES["enter_sub"])
    elif kind == "stop":
        if ev.object_id is None:
            key = {"inside": "stop_inside", "middle": "stop_middle"}.get(ev.variant, "stop_room")
            main = _choice(rng, TEMPLATES[key] + (TEMPLATES["stop_room"][:2] if ev.variant else ()))
        else:
            main = _choice(rng, TEMPLATES["stop_obj"])
            preps = STOP_PREPOSITIONS + (("in front of",) * 2 if ev.variant == "front" else ())
            fields["prep"] = _choice(rng, preps)
        sub = None
    else:
        raise ValueError(f"unknown clause kind {kind!r}")
    main = " ".join(main.format(**fields).split())
    sub = " ".join(sub.format(**fields).split()) if sub else None
    return main, sub


def _assemble(events: List[_Event], worded: List[Tuple[str, Optional[str]]],
              rng: np.random.Generator) -> Instruction:
    """Group clauses into 1-5 sentences (more only for very long paths), optionally open
    a sentence with a subordinate clause, and join the rest with connectors."""
    n = len(events)
    k_lo, k_hi = max(1, math.ceil(n / 4)), max(1, min(5, n))
    k = int(rng.integers(min(k_lo, k_hi), max(k_lo, k_hi) + 1))
    sizes = np.ones(k, dtype=int)
    for i in rng.integers(0, k, size=n - k):
        sizes[i] += 1
    sentences, clauses, pos = [], [], 0
    for s, size in enumerate(sizes):
        group = list(range(pos, pos + int(size)))
        pos += int(size)
        parts: List[str] = []
        for j, idx in enumerate(group):
            main, sub = worded[idx]
            use_sub = j == 0 and len(group) > 1 and sub is not None and rng.random() < 0.35
            text = sub if use_sub else main
            if j == 0:
                opener = "" if (s == 0 or use_sub) else _choice(rng, SENTENCE_OPENERS)
                parts.append(opener + text + (", " if use_sub else ""))
            elif parts[-1].endswith(", "):
                parts.append(text)
            else:
                parts.append(_choice(rng, CONNECTORS) + text)
            ev = events[idx]
            clauses.append(Clause(kind=ev.kind, text=text, room_id=ev.room_id,
                                  object_id=ev.object_id,
                                  direction=ev.direction if ev.kind in ("turn", "bear") else
                                  (ev.side if ev.kind == "pass" else None),
                                  step_index=int(ev.step_index)))
        sentence = "".join(parts)
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return Instruction(text=" ".join(sentences), clauses=clauses)


# ============================================================================ public API
def describe(positions: np.ndarray, headings: np.ndarray, plan: FloorPlan,
             rng: np.random.Generator, *, style: Optional[str] = None,
             analysis: Optional[PathAnalysis] = None) -> Instruction:
    """One R2R-style instruction for a trajectory: positions (T, 3) and headings (T,)
    radians in ``plan``. ``style`` is one of STYLES (random when None); ``analysis``
    may pass a precomputed :func:`analyse_trajectory` of the same trajectory."""
    if style is None:
        style = _choice(rng, STYLES)
    if style not in STYLES:
        raise ValueError(f"unknown instruction style {style!r}; expected one of {STYLES}")
    if analysis is None:
        analysis = analyse_trajectory(positions, headings, plan)
    namer = _Namer(plan)
    events = _plan_events(analysis, plan, namer, rng, style)
    worded = [_word_event(ev, namer, rng) for ev in events]
    return _assemble(events, worded, rng)


def describe_many(positions: np.ndarray, headings: np.ndarray, plan: FloorPlan,
                  rng: np.random.Generator, n: int = 3,
                  max_attempts: int = 200) -> List[Instruction]:
    """``n`` different instructions for one path (R2R has 3): styles are cycled in a
    random order, and a text equal to an earlier one is drawn again."""
    if n < 1:
        raise ValueError(f"describe_many needs n >= 1, got {n}")
    analysis = analyse_trajectory(positions, headings, plan)
    order = [STYLES[int(i)] for i in rng.permutation(len(STYLES))]
    out: List[Instruction] = []
    texts: set = set()
    for attempt in range(max_attempts):
        ins = describe(positions, headings, plan, rng, style=order[len(out) % len(order)],
                       analysis=analysis)
        if ins.text not in texts:
            out.append(ins)
            texts.add(ins.text)
            if len(out) == n:
                return out
    raise RuntimeError(f"house {plan.house_id}: only {len(out)} distinct instructions for a "
                       f"path of {len(analysis.positions)} steps after {max_attempts} attempts")
