"""``btnk-env export-scene``: the exported .glb, read back with trimesh, is the layout's apartment in
habitat-sim's Z-up stage frame, with a walkable floor, walls where the layout puts them and no roof."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from btnk_env.cli import main  # noqa: E402
from btnk_env.envs.export_scene import WORLD_TO_FILE, export_scene  # noqa: E402
from btnk_env.envs.layout import WALL_THICKNESS, generate_layout  # noqa: E402
from btnk_env.envs.panorama_rooms import WORLDS  # noqa: E402

SEED = 4  # six rooms


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = export_scene(SEED, tmp_path_factory.mktemp("scene") / "apartment.glb")
    layout = generate_layout(SEED, **{k: WORLDS["apartment"][k] for k in ("room_grid", "room_size", "max_furniture")})
    scene = trimesh.load(path, force="scene")
    meshes = [g for g in scene.geometry.values()]
    file_tris = np.concatenate([m.vertices[m.faces] for m in meshes])  # (T, 3, 3) in the file's frame
    world = file_tris @ WORLD_TO_FILE  # row vectors: world = WORLD_TO_FILE.T @ file
    return path, layout, file_tris, world


def _normals_and_areas(tris):
    cross = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])  # from the winding, as Recast does
    area = 0.5 * np.linalg.norm(cross, axis=1)
    return cross / np.maximum(2 * area, 1e-12)[:, None], area


def test_the_file_is_z_up_with_the_floor_at_zero(exported):
    _, layout, file_tris, _ = exported
    z = file_tris[..., 2]
    assert z.min() == pytest.approx(0.0, abs=1e-6)
    assert z.max() == pytest.approx(layout.ceiling_height, abs=1e-5)  # nothing above the ceiling
    n, area = _normals_and_areas(file_tris)
    floor = (np.abs(z).max(1) < 1e-6) & (n[:, 2] > 0.99)
    assert area[floor].sum() > 10.0  # the floor faces +Z in the file: Habitat's 'up' for .glb stages


def test_floor_and_ceiling_cover_the_rooms_and_there_is_no_roof(exported):
    _, layout, _, world = exported
    n, area = _normals_and_areas(world)
    y = world[..., 1]
    floor = (np.abs(y).max(1) < 1e-6) & (n[:, 1] > 0.99)
    ceiling = (np.abs(y - layout.ceiling_height).max(1) < 1e-5) & (n[:, 1] < -0.99)
    rooms_area = sum(r.area for r in layout.rooms)
    assert area[floor].sum() == pytest.approx(rooms_area, rel=1e-6)
    assert area[ceiling].sum() == pytest.approx(rooms_area, rel=1e-6)
    # walkable faces (normal up, by winding) at ceiling height would make a navmesh island on the roof
    up_high = (n[:, 1] > 0.5) & (y.min(1) >= layout.ceiling_height - 1e-3)
    assert not up_high.any()
    # the floor of every room is there: its centre lies on an upward floor triangle
    floor_tris = world[floor][:, :, [0, 2]]
    for r in layout.rooms:
        c = np.array(r.center)
        assert any(_in_triangle(c, t) for t in floor_tris), r


def _in_triangle(p, t) -> bool:
    def cross(a, b):
        return a[0] * b[1] - a[1] * b[0]

    d = [cross(t[(i + 1) % 3] - t[i], p - t[i]) for i in range(3)]
    return all(v >= -1e-9 for v in d) or all(v <= 1e-9 for v in d)


def _first_hits(origins, directions, tris):
    """Distance to the nearest triangle along each ray (Moller-Trumbore): ``(R,)``, inf for a miss."""
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]  # (T, 3)
    p = np.cross(directions[:, None], e2[None])  # (R, T, 3)
    det = np.einsum("rtk,tk->rt", p, e1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origins[:, None] - tris[None, :, 0]  # (R, T, 3)
    u = np.einsum("rtk,rtk->rt", s, p) * inv
    q = np.cross(s, e1[None])
    v = np.einsum("rk,rtk->rt", directions, q) * inv
    t = np.einsum("rtk,tk->rt", q, e2) * inv
    hit = ok & (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9) & (t > 1e-9)
    return np.where(hit, t, np.inf).min(1)


def test_walls_stand_where_the_layout_puts_them(exported):
    _, layout, _, world = exported
    t = WALL_THICKNESS / 2
    y = 2.5  # above doors (2.1 m), furniture, pictures and windows; below the lamps
    origins, directions, expected = [], [], []
    for r in layout.rooms:
        cx, cz = r.center
        for d, dist in (((1, 0, 0), r.x1 - t - cx), ((-1, 0, 0), cx - r.x0 - t),
                        ((0, 0, 1), r.z1 - t - cz), ((0, 0, -1), cz - r.z0 - t)):
            origins.append((cx, y, cz))
            directions.append(d)
            expected.append(dist)
    hits = _first_hits(np.array(origins, float), np.array(directions, float), world)
    assert np.allclose(hits, expected, atol=1e-5)


def test_glb_has_no_axis_transform_and_materials_carry_the_tints(exported):
    path, layout, _, _ = exported
    raw = path.read_bytes()
    assert raw[:4] == b"glTF"
    (json_len,) = struct.unpack("<I", raw[12:16])
    doc = json.loads(raw[20:20 + json_len])
    assert not any(k in node for node in doc["nodes"] for k in ("matrix", "rotation", "scale", "translation"))
    factors = np.array([m["pbrMetallicRoughness"]["baseColorFactor"][:3] for m in doc["materials"]])
    for r in layout.rooms:  # each room's wall colour (trimesh keeps colour factors to 8 bits)
        assert np.abs(factors - np.array(r.wall_tint)).max(1).min() <= 0.5 / 255 + 1e-6
    assert all("baseColorTexture" in m["pbrMetallicRoughness"] for m in doc["materials"])


def test_cli_never_overwrites_without_overwrite(tmp_path, capsys):
    out = tmp_path / "room.glb"
    assert main(["export-scene", "--seed", "2", "--world", "single_room", "--out", str(out)]) == 0
    first = out.read_bytes()
    out.write_bytes(b"mine")
    assert main(["export-scene", "--seed", "2", "--world", "single_room", "--out", str(out)]) == 2
    assert out.read_bytes() == b"mine" and "--overwrite" in capsys.readouterr().out
    assert main(["export-scene", "--seed", "2", "--world", "single_room", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() == first  # deterministic: the same seed writes the same bytes
    assert main(["export-scene", "--seed", "2", "--out", str(tmp_path / "room.obj")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["room.glb"]  # no temporary file left behind


def test_builtin_depth_matches_rays_cast_on_the_exported_scene(exported):
    """The same pose sees the same geometry: the built-in world's depth panorama against rays cast
    on the exported triangles (in the shared world frame), through the pixel centres both
    environments use (elevation 90 - (i + 0.5) * 180 / H, azimuth (j + 0.5) * 360 / 2H - 180)."""
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

    _, layout, _, world = exported
    h = 16
    env = PanoramaRoomsEnv(height=h, depth=True)
    try:
        env.reset(seed=SEED, options={"goal": (100.0, 0.0, 100.0)})  # the goal marker outside the apartment
        assert env.layout.boxes == layout.boxes
        position, heading = env.sample_navigable_pose(np.random.default_rng(0))
        depth = env.set_pose(position, heading)["depth"][..., 0]  # (H, 2H) metres along each ray
    finally:
        env.close()
    lat = (0.5 - (np.arange(h) + 0.5) / h) * np.pi
    lon = (np.arange(2 * h) + 0.5) / (2 * h) * 2 * np.pi - np.pi
    lat, lon = np.meshgrid(lat, lon, indexing="ij")
    c, s = np.cos(heading), np.sin(heading)
    dx, dy, dz = np.sin(lon) * np.cos(lat), np.sin(lat), -np.cos(lon) * np.cos(lat)  # camera frame, -z ahead
    rays = np.stack([c * dx + s * dz, dy, -s * dx + c * dz], -1).reshape(-1, 3)  # world frame
    eye = np.array([position[0], PanoramaRoomsEnv.EYE_HEIGHT, position[2]])
    cast = _first_hits(np.repeat(eye[None], len(rays), 0), rays, world).reshape(h, 2 * h)
    err = np.abs(depth - cast)
    assert np.median(err) < 0.01  # where pixels straddle an edge the built-in depth is interpolated
    assert (err < 0.05).mean() > 0.75
