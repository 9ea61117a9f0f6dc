"""The ``oracle-room`` control: walk to the centre of the last room type the instruction
names (the instance of that type nearest to the start, by geodesic distance) and stop.

It knows the house's floor plan (privileged), but reads the instruction only for room
words; a fair benchmark must keep its success rate low, which is why houses repeat
room types and goals sit at landmarks rather than at room centres.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from agent.datasets.vocab import tokenize
from agent.envs.houses.floorplan import ROOM_TYPES, FloorPlan

# multi-word room types are matched on their word sequence
_ROOM_TYPE_WORDS = {rt: rt.split() for rt in ROOM_TYPES}


def last_named_room_type(instruction_text: str) -> Optional[str]:
    """The room type mentioned last in the instruction (None if it names none)."""
    words = tokenize(instruction_text)
    best, best_pos = None, -1
    for room_type, parts in _ROOM_TYPE_WORDS.items():
        n = len(parts)
        for i in range(len(words) - n + 1):
            if words[i:i + n] == parts and i + n - 1 > best_pos:
                best, best_pos = room_type, i + n - 1
    return best


def oracle_room_target(plan: FloorPlan, nav, instruction_text: str,
                       start: Sequence[float]) -> np.ndarray:
    """Navigable point at the centre of the nearest room of the last-named type; the
    start itself when the instruction names no room type present in the house."""
    start = np.asarray(start, dtype=np.float64)
    room_type = last_named_room_type(instruction_text)
    rooms = [r for r in plan.rooms if r.room_type == room_type]
    if not rooms:
        return start
    best, best_d = start, np.inf
    for room in rooms:
        cx, cz = room.rect.center
        centre = nav.snap_to_navigable(np.array([cx, start[1], cz]))
        d = nav.geodesic_distance(start, centre)
        if d < best_d:
            best, best_d = centre, d
    return np.asarray(best, dtype=np.float64)
