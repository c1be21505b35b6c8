"""Procedural multi-room apartments for the built-in panorama world.

An apartment is a grid of rectangular rooms (random column widths and row depths) enclosed by
walls; neighbouring rooms are joined by doors along a random spanning tree (so every room is
reachable) plus a few extra doors. Each room gets a floor material, a wall colour, a ceiling lamp,
furniture-like boxes against its walls and pictures on them. Everything is a function of the seed.

Coordinates are metres, y up, the floor at ``y = 0``; the plan is the x-z plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from btnk_env.envs.textures import Material

__all__ = ["Box", "Room", "Layout", "generate_layout", "WALL_THICKNESS", "DOOR_WIDTH", "DOOR_HEIGHT"]

WALL_THICKNESS = 0.1
DOOR_WIDTH = 1.0
DOOR_HEIGHT = 2.1

_FLOORS = (Material.WOOD_FLOOR, Material.TILE_FLOOR, Material.CARPET)
_WALLS = (Material.PAINT, Material.PAINT, Material.WALLPAPER)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: a wall piece, a piece of furniture, a lamp or a picture."""

    lo: tuple[float, float, float]
    """Minimum corner ``(x, y, z)`` in metres."""
    hi: tuple[float, float, float]
    """Maximum corner ``(x, y, z)`` in metres."""
    material: Material = Material.PLAIN
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB multiplier of the texture, each in [0, 1]."""
    emissive: float = 0.0
    """1 draws the tinted texture unlit (lamps, the goal), 0 fully lit."""
    room: int = 0
    """Index of the room whose lamp lights it."""
    wall: bool = False
    """Walls take the material and colour of the room each face looks into."""
    fit_uv: bool = False
    """Stretch the texture once over each face (pictures) instead of repeating it per metre."""
    solid: bool = True
    """Blocks the agent (its footprint on the floor plan)."""


@dataclass(frozen=True)
class Room:
    """A rectangular room ``[x0, x1] x [z0, z1]`` (between wall centre lines)."""

    x0: float
    z0: float
    x1: float
    z1: float
    floor: Material
    wall: Material
    wall_tint: tuple[float, float, float]
    light: tuple[float, float, float]
    """Lamp colour times intensity, RGB."""

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.z0 + self.z1))

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.z1 - self.z0)


@dataclass
class Layout:
    """A generated apartment. Build one with :func:`generate_layout`."""

    seed: int
    rooms: list[Room]
    boxes: list[Box]
    ceiling_height: float
    obstacles: np.ndarray = field(repr=False)
    """``(K, 4)`` float64 footprints ``(xmin, zmin, xmax, zmax)`` of the solid boxes."""

    def room_at(self, x: float, z: float) -> int:
        """Index of the room containing ``(x, z)``, or -1 outside the apartment."""
        for i, r in enumerate(self.rooms):
            if r.x0 <= x <= r.x1 and r.z0 <= z <= r.z1:
                return i
        return -1

    def is_free(self, x: float, z: float, radius: float) -> bool:
        """Whether a disc of ``radius`` metres at ``(x, z)`` is inside and touches no obstacle."""
        if self.room_at(x, z) < 0:
            return False
        o = self.obstacles
        dx = np.maximum(np.maximum(o[:, 0] - x, 0.0), x - o[:, 2])
        dz = np.maximum(np.maximum(o[:, 1] - z, 0.0), z - o[:, 3])
        return bool(np.all(dx * dx + dz * dz >= radius * radius))


def _pastel(rng: np.random.Generator) -> tuple[float, float, float]:
    base = rng.uniform(0.75, 1.0)
    return tuple(float(np.clip(base + rng.uniform(-0.12, 0.06), 0, 1)) for _ in range(3))


def _place_doors(rng, ncols, nrows):
    """Pick which internal edges get a door: a random spanning tree plus ~25 % extra."""
    edges = [((c, r), (c + 1, r)) for r in range(nrows) for c in range(ncols - 1)]
    edges += [((c, r), (c, r + 1)) for r in range(nrows - 1) for c in range(ncols)]
    order = rng.permutation(len(edges))
    parent = {(c, r): (c, r) for c in range(ncols) for r in range(nrows)}

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    doors = set()
    for i in order:
        a, b = edges[i]
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            doors.add(edges[i])
        elif rng.random() < 0.25:
            doors.add(edges[i])
    return doors


def _wall_line(boxes, axis, coord, a, b, door_at, height, lo_ext, hi_ext):
    """Wall pieces along a line; ``axis`` 'x' runs along x at z=coord. ``door_at`` is a centre or None."""
    t = WALL_THICKNESS / 2
    a, b = a - lo_ext, b + hi_ext
    spans = [(a, b, 0.0, height)]
    if door_at is not None:
        d0, d1 = door_at - DOOR_WIDTH / 2, door_at + DOOR_WIDTH / 2
        spans = [(a, d0, 0.0, height), (d1, b, 0.0, height), (d0, d1, DOOR_HEIGHT, height)]
    for s0, s1, y0, y1 in spans:
        solid = y0 == 0.0
        if axis == "x":
            boxes.append(Box((s0, y0, coord - t), (s1, y1, coord + t), wall=True, solid=solid))
        else:
            boxes.append(Box((coord - t, y0, s0), (coord + t, y1, s1), wall=True, solid=solid))


_FURNITURE = {
    # name: (width range, depth, height range, material, against a wall)
    "bed": ((1.4, 1.8), 2.0, (0.45, 0.55), Material.FABRIC, True),
    "sofa": ((1.6, 2.2), 0.9, (0.4, 0.45), Material.FABRIC, True),
    "cabinet": ((0.8, 1.4), 0.45, (1.6, 2.0), Material.WOOD, True),
    "table": ((0.9, 1.5), 0.8, (0.72, 0.78), Material.WOOD, False),
    "plant": ((0.4, 0.5), 0.45, (0.35, 0.45), Material.PLAIN, True),
}


def _furniture_boxes(kind, x0, z0, x1, z1, h, room, rng, facing_wall):
    """Boxes of one piece of furniture with footprint [x0,x1]x[z0,z1]."""
    mat = _FURNITURE[kind][3]
    tint = (float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.3, 0.8)))
    if mat == Material.WOOD:
        tint = (1.0, 1.0, 1.0) if rng.random() < 0.5 else (0.7, 0.62, 0.6)
    out = []
    if kind == "table":
        top = 0.05
        out.append(Box((x0, h - top, z0), (x1, h, z1), mat, tint, room=room))
        leg = 0.06
        for lx, lz in ((x0, z0), (x1 - leg, z0), (x0, z1 - leg), (x1 - leg, z1 - leg)):
            out.append(Box((lx, 0.0, lz), (lx + leg, h - top, lz + leg), mat, tint, room=room, solid=False))
    elif kind == "plant":
        out.append(Box((x0, 0.0, z0), (x1, h, z1), Material.WOOD, (0.55, 0.4, 0.35), room=room))
        g = (0.2, float(rng.uniform(0.45, 0.65)), 0.2)
        out.append(Box((x0 - 0.1, h, z0 - 0.1), (x1 + 0.1, h + 0.7, z1 + 0.1), Material.FABRIC, g, room=room))
    else:
        out.append(Box((x0, 0.0, z0), (x1, h, z1), mat, tint, room=room))
        if kind in ("bed", "sofa"):  # a headboard / backrest along the wall side
            bx0, bz0, bx1, bz1 = x0, z0, x1, z1
            side, depth = facing_wall, 0.15 if kind == "sofa" else 0.08
            if side == "z0":
                bz1 = z0 + depth
            elif side == "z1":
                bz0 = z1 - depth
            elif side == "x0":
                bx1 = x0 + depth
            else:
                bx0 = x1 - depth
            top = 0.85 if kind == "sofa" else 1.05
            out.append(Box((bx0, 0.0, bz0), (bx1, top, bz1), mat, tuple(0.8 * c for c in tint), room=room))
    return out


def _overlaps(rect, rects, margin):
    x0, z0, x1, z1 = rect
    return any(x0 < b[2] + margin and b[0] - margin < x1 and z0 < b[3] + margin and b[1] - margin < z1 for b in rects)


def _on_wall(side, u0, u1, y0, y1, ix0, iz0, ix1, iz1, d):
    """Corners of a thin panel of depth ``d`` on the inner face of wall ``side``."""
    return {
        "z0": ((u0, y0, iz0), (u1, y1, iz0 + d)),
        "z1": ((u0, y0, iz1 - d), (u1, y1, iz1)),
        "x0": ((ix0, y0, u0), (ix0 + d, y1, u1)),
        "x1": ((ix1 - d, y0, u0), (ix1, y1, u1)),
    }[side]


def _furnish(rng, room_idx, room, door_rects, max_items, exterior=()):
    """Furniture and pictures for one room; never in front of a door."""
    t = WALL_THICKNESS / 2
    ix0, iz0, ix1, iz1 = room.x0 + t, room.z0 + t, room.x1 - t, room.z1 - t
    taken: list[tuple[float, float, float, float]] = []
    boxes: list[Box] = []
    for _ in range(int(rng.integers(1, max_items + 1)) if max_items > 0 else 0):
        kind = str(rng.choice(list(_FURNITURE)))
        (wlo, whi), depth, (hlo, hhi), _, on_wall = _FURNITURE[kind]
        w, h = float(rng.uniform(wlo, whi)), float(rng.uniform(hlo, hhi))
        for _try in range(8):
            side = str(rng.choice(["x0", "x1", "z0", "z1"]))
            along_x = side in ("z0", "z1")
            span = (ix1 - ix0) if along_x else (iz1 - iz0)
            fw, fd = (w, depth) if along_x else (depth, w)
            if span < w + 0.2:
                continue
            if on_wall:
                u = float(rng.uniform(0.05, span - w - 0.05))
                if side == "z0":
                    rect = (ix0 + u, iz0, ix0 + u + w, iz0 + depth)
                elif side == "z1":
                    rect = (ix0 + u, iz1 - depth, ix0 + u + w, iz1)
                elif side == "x0":
                    rect = (ix0, iz0 + u, ix0 + depth, iz0 + u + w)
                else:
                    rect = (ix1 - depth, iz0 + u, ix1, iz0 + u + w)
            else:  # a table stands in the middle part of the room, leaving a path around it
                cx = float(rng.uniform(ix0 + 0.9 + fw / 2, max(ix0 + 0.9 + fw / 2, ix1 - 0.9 - fw / 2)))
                cz = float(rng.uniform(iz0 + 0.9 + fd / 2, max(iz0 + 0.9 + fd / 2, iz1 - 0.9 - fd / 2)))
                rect = (cx - fw / 2, cz - fd / 2, cx + fw / 2, cz + fd / 2)
                if rect[2] > ix1 - 0.8 or rect[3] > iz1 - 0.8:
                    continue
            if _overlaps(rect, taken, 0.5) or _overlaps(rect, door_rects, 0.0):
                continue
            taken.append(rect)
            boxes += _furniture_boxes(kind, *rect, h, room_idx, rng, side)
            break
    for side in exterior:  # windows: bright panels on outside walls
        along_x = side in ("z0", "z1")
        a, b = (ix0, ix1) if along_x else (iz0, iz1)
        w = float(rng.uniform(0.9, 1.6))
        if b - a < w + 1.2 or rng.random() < 0.4:
            continue
        u = float(rng.uniform(a + 0.6, b - 0.6 - w))
        lo, hi = _on_wall(side, u, u + w, 0.9, 2.2, ix0, iz0, ix1, iz1, 0.02)
        foot = (lo[0], lo[2], hi[0], hi[2])
        if _overlaps(foot, taken, 0.0):
            continue
        sky = (0.93, 0.96, 1.0)
        boxes.append(Box(lo, hi, Material.PLAIN, sky, emissive=1.0, room=room_idx, solid=False))
        taken.append(foot)
    for _ in range(int(rng.integers(1, 3))):  # pictures on the walls
        side = str(rng.choice(["x0", "x1", "z0", "z1"]))
        along_x = side in ("z0", "z1")
        a, b = (ix0, ix1) if along_x else (iz0, iz1)
        w = float(rng.uniform(0.6, 1.2))
        if b - a < w + 1.0:
            continue
        u = float(rng.uniform(a + 0.5, b - 0.5 - w))
        y0 = float(rng.uniform(1.1, 1.5))
        y1 = y0 + float(rng.uniform(0.5, 0.8))
        lo, hi = _on_wall(side, u, u + w, y0, y1, ix0, iz0, ix1, iz1, 0.03)
        foot = (lo[0], lo[2], hi[0], hi[2])
        if _overlaps(foot, door_rects, 0.1) or _overlaps(foot, taken, 0.0):
            continue
        mat = Material.PAINTING_A if rng.random() < 0.5 else Material.PAINTING_B
        boxes.append(Box(lo, hi, mat, (1.0, 1.0, 1.0), room=room_idx, fit_uv=True, solid=False))
    return boxes


def generate_layout(
    seed: int,
    room_grid: tuple[int, int] = (1, 3),
    room_size: tuple[float, float] = (3.0, 5.0),
    max_furniture: int = 3,
) -> Layout:
    """Generate an apartment.

    Args:
        seed: the layout seed; the same seed gives the same apartment.
        room_grid: inclusive range of the number of room columns and of room rows (each drawn
            independently), e.g. ``(1, 1)`` for a single room, ``(1, 3)`` for 1 to 9 rooms.
        room_size: inclusive range of each column width / row depth in metres (at least 2.5).
        max_furniture: at most this many pieces of furniture per room (0 for none).

    Returns:
        a :class:`Layout`.

    Example:
        >>> lay = generate_layout(3)
        >>> len(lay.rooms) >= 1 and lay.obstacles.shape[1] == 4
        True
        >>> generate_layout(3).boxes == lay.boxes
        True
    """
    lo_n, hi_n = room_grid
    if not 1 <= lo_n <= hi_n <= 4:
        raise ValueError(f"room_grid must satisfy 1 <= lo <= hi <= 4, got {room_grid}")
    if not 2.5 <= room_size[0] <= room_size[1]:
        raise ValueError(f"room_size must satisfy 2.5 <= lo <= hi, got {room_size}")
    rng = np.random.default_rng([seed, 0x1A70])
    ncols, nrows = (int(rng.integers(lo_n, hi_n + 1)) for _ in range(2))
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(*room_size, size=ncols))])
    zs = np.concatenate([[0.0], np.cumsum(rng.uniform(*room_size, size=nrows))])
    height = float(rng.uniform(2.6, 3.0))
    rooms = []
    for r in range(nrows):
        for c in range(ncols):
            warm = rng.uniform(0.0, 0.15)
            light = tuple(float(v) for v in rng.uniform(1.3, 1.7) * np.array([1.0, 0.96 - warm / 2, 0.9 - warm]))
            rooms.append(Room(float(xs[c]), float(zs[r]), float(xs[c + 1]), float(zs[r + 1]),
                              _FLOORS[int(rng.integers(3))], _WALLS[int(rng.integers(3))], _pastel(rng), light))
    doors = _place_doors(rng, ncols, nrows)
    t = WALL_THICKNESS / 2
    boxes: list[Box] = []
    door_rects = []
    # walls running along x (at each z grid line), one segment per column
    for r in range(nrows + 1):
        for c in range(ncols):
            door = None
            if 0 < r < nrows and ((c, r - 1), (c, r)) in doors:
                door = float(rng.uniform(xs[c] + 0.4 + DOOR_WIDTH / 2, xs[c + 1] - 0.4 - DOOR_WIDTH / 2))
                door_rects.append((door - DOOR_WIDTH / 2, zs[r] - 0.9, door + DOOR_WIDTH / 2, zs[r] + 0.9))
            _wall_line(boxes, "x", zs[r], xs[c], xs[c + 1], door, height, t if c == 0 else 0.0, t if c == ncols - 1 else 0.0)
    # walls running along z (at each x grid line), between the x walls
    for c in range(ncols + 1):
        for r in range(nrows):
            door = None
            if 0 < c < ncols and ((c - 1, r), (c, r)) in doors:
                door = float(rng.uniform(zs[r] + 0.4 + DOOR_WIDTH / 2, zs[r + 1] - 0.4 - DOOR_WIDTH / 2))
                door_rects.append((xs[c] - 0.9, door - DOOR_WIDTH / 2, xs[c] + 0.9, door + DOOR_WIDTH / 2))
            _wall_line(boxes, "z", xs[c], zs[r] + t, zs[r + 1] - t, door, height, 0.0, 0.0)
    for i, room in enumerate(rooms):
        cx, cz = room.center
        boxes.append(Box((cx - 0.3, height - 0.05, cz - 0.3), (cx + 0.3, height, cz + 0.3),
                         Material.PLAIN, (1.0, 0.97, 0.9), emissive=1.0, room=i, solid=False))
        exterior = [side for side, edge in (("x0", room.x0 == xs[0]), ("x1", room.x1 == xs[-1]),
                                             ("z0", room.z0 == zs[0]), ("z1", room.z1 == zs[-1])) if edge]
        boxes += _furnish(rng, i, room, door_rects, max_furniture, exterior)
    obstacles = np.array([(b.lo[0], b.lo[2], b.hi[0], b.hi[2]) for b in boxes if b.solid], dtype=np.float64)
    return Layout(seed=seed, rooms=rooms, boxes=boxes, ceiling_height=height, obstacles=obstacles.reshape(-1, 4))
