"""Triangle meshes of an apartment :class:`~btnk_env.envs.layout.Layout`, ready for the GPU.

Every vertex is :data:`VERTEX_FLOATS` float32 values: position (3), normal (3), texture
coordinates (2), texture layer (1), tint RGB (3), emissive (1), room index (1).
"""

from __future__ import annotations

import numpy as np

from btnk_env.envs.layout import Box, Layout
from btnk_env.envs.textures import Material

__all__ = ["VERTEX_FLOATS", "VERTEX_FORMAT", "layout_mesh", "box_mesh"]

VERTEX_FLOATS = 14
VERTEX_FORMAT = "3f 3f 2f 1f 3f 1f 1f"
VERTEX_ATTRIBUTES = ("in_pos", "in_normal", "in_uv", "in_layer", "in_tint", "in_emit", "in_room")

# the six faces of a box: (axis of the normal, sign)
_FACES = ((0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1))
_FLOOR_UV_SCALE = {Material.WOOD_FLOOR: 0.5, Material.TILE_FLOOR: 0.5, Material.CARPET: 0.5}


def _quad(corners: np.ndarray, normal, uvs: np.ndarray, layer, tint, emit, room) -> np.ndarray:
    """Two triangles from 4 corners in counter-clockwise order seen from the normal side.

    Returns:
        ``(6, VERTEX_FLOATS)`` float32.
    """
    idx = [0, 1, 2, 0, 2, 3]
    out = np.empty((6, VERTEX_FLOATS), np.float32)
    out[:, 0:3] = corners[idx]
    out[:, 3:6] = normal
    out[:, 6:8] = uvs[idx]
    out[:, 8] = float(layer)
    out[:, 9:12] = tint
    out[:, 12] = emit
    out[:, 13] = room
    return out


def _box_faces(box: Box, layout: Layout | None, skip_floor_contact: bool = True) -> list[np.ndarray]:
    lo, hi = np.asarray(box.lo, np.float64), np.asarray(box.hi, np.float64)
    quads = []
    for axis, sign in _FACES:
        if axis == 1 and sign < 0 and lo[1] <= 1e-6 and skip_floor_contact:
            continue  # the bottom of anything standing on the floor is never seen
        u_ax, v_ax = {0: (2, 1), 1: (0, 2), 2: (0, 1)}[axis]
        c = np.empty((4, 3))
        plane = hi[axis] if sign > 0 else lo[axis]
        us = (lo[u_ax], hi[u_ax], hi[u_ax], lo[u_ax])
        vs = (lo[v_ax], lo[v_ax], hi[v_ax], hi[v_ax])
        c[:, axis], c[:, u_ax], c[:, v_ax] = plane, us, vs
        normal = np.zeros(3)
        normal[axis] = sign
        # make the winding counter-clockwise seen from the normal side
        if np.dot(np.cross(c[1] - c[0], c[2] - c[0]), normal) < 0:
            c = c[::-1]
        if box.fit_uv:
            span = c.max(0) - c.min(0) + 1e-9
            rel = (c - c.min(0)) / span
            uv = np.stack([rel[:, u_ax], rel[:, v_ax]], 1)  # the picture once, unmirrored or not
        else:
            uv = np.stack([c[:, u_ax], c[:, v_ax]], 1)
        material, tint, room = box.material, box.tint, box.room
        if box.wall and layout is not None:
            center = c.mean(0) + 0.3 * normal
            room = layout.room_at(center[0], center[2])
            if room < 0:
                continue  # the outside of the apartment is never seen
            r = layout.rooms[room]
            material, tint = r.wall, r.wall_tint
        quads.append(_quad(c, normal, uv, int(material), tint, box.emissive, max(room, 0)))
    return quads


def layout_mesh(layout: Layout) -> np.ndarray:
    """Floors, ceilings and every box of ``layout``.

    Returns:
        ``(N, VERTEX_FLOATS)`` float32 triangle list (``N`` a multiple of 3).
    """
    quads = []
    h = layout.ceiling_height
    for i, r in enumerate(layout.rooms):
        xz = np.array([[r.x0, r.z0], [r.x0, r.z1], [r.x1, r.z1], [r.x1, r.z0]])
        floor = np.stack([xz[:, 0], np.zeros(4), xz[:, 1]], 1)
        s = _FLOOR_UV_SCALE.get(r.floor, 1.0)
        quads.append(_quad(floor, (0, 1, 0), xz * s, int(r.floor), (1, 1, 1), 0.0, i))
        ceiling = np.stack([xz[::-1, 0], np.full(4, h), xz[::-1, 1]], 1)
        quads.append(_quad(ceiling, (0, -1, 0), xz[::-1], int(Material.CEILING), (1, 1, 1), 0.0, i))
    for box in layout.boxes:
        quads += _box_faces(box, layout)
    return np.concatenate(quads).astype(np.float32)


def box_mesh(size: tuple[float, float, float], tint, emissive: float = 1.0) -> np.ndarray:
    """A box with its base centred at the origin (the goal marker), every face drawn.

    Returns:
        ``(36, VERTEX_FLOATS)`` float32.
    """
    sx, sy, sz = size
    box = Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, sz / 2), Material.PLAIN, tint, emissive=emissive)
    return np.concatenate(_box_faces(box, None, skip_floor_contact=False)).astype(np.float32)
