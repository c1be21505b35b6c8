"""``btnk-env export-scene``: a built-in apartment as a ``.glb`` stage that Habitat-Sim loads.

The geometry is the built-in world's own (:func:`~btnk_env.envs.mesh.layout_mesh` of
:func:`~btnk_env.envs.layout.generate_layout`), with each material's texture and tint as a glTF
PBR material, so the same apartment can be walked in :class:`PanoramaRoomsEnv` and in
:class:`HabitatPanoramaEnv` and compared pose for pose.

Axes. glTF says +Y is up, but habitat-sim (``StageAttributesManager::
setDefaultAssetNameBasedAttributes``, 0.2.2 to 0.3.3) takes a ``.glb`` stage without a config
for a Matterport3D mesh: up is the file's +Z and ahead its +Y, rotated so that file +Z becomes
world +Y and file +Y world -Z. trimesh writes coordinates as given. So a world point ``(x, y, z)``
(metres, y up, floor at 0, heading 0 looking along -z: the built-in world's frame, which is also
Habitat's) is written as ``(x, -z, y)``, and the apartment stands in Habitat exactly where it
stands in the built-in world.

Navmesh. Habitat computes the navmesh itself (Recast) from the triangles: a triangle is walkable
when its normal, from its winding, points up. Floors wind up (walkable), ceilings down (not), and
the upward faces at ceiling height (the tops of walls and lamps) are left out, so the navmesh has
no island on the roof. Doors are 1 m wide and 2.1 m high, wide enough for Habitat's default agent
(radius 0.1 m, height 1.5 m).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from btnk_env.envs.layout import Layout, generate_layout
from btnk_env.envs.mesh import VERTEX_FLOATS, layout_mesh
from btnk_env.envs.panorama_rooms import WORLDS
from btnk_env.envs.textures import Material, make_textures
from btnk_env.models.files import atomic_write_bytes

__all__ = ["WORLD_TO_FILE", "scene_triangles", "apartment_scene", "export_scene", "add_arguments", "run"]

WORLD_TO_FILE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""``file = WORLD_TO_FILE @ world``: the built-in (and Habitat) world frame, y up, to the Z-up
frame habitat-sim assumes for ``.glb`` stages. A rotation (determinant 1): windings are kept."""


def scene_triangles(layout: Layout) -> np.ndarray:
    """The built-in world's triangles of ``layout`` without the upward faces at ceiling height.

    Returns:
        ``(N, VERTEX_FLOATS)`` float32 triangle list in world coordinates (see :mod:`~btnk_env.envs.mesh`).
    """
    tri = layout_mesh(layout).reshape(-1, 3, VERTEX_FLOATS)  # (T, 3, F)
    faces_up = tri[:, 0, 4] > 0.5  # normal y
    at_ceiling = tri[:, :, 1].min(1) >= layout.ceiling_height - 1e-4
    return tri[~(faces_up & at_ceiling)].reshape(-1, VERTEX_FLOATS)


def apartment_scene(layout: Layout, textures: np.ndarray):
    """A ``trimesh.Scene`` of ``layout`` in habitat-sim's ``.glb`` frame, one mesh per material and tint.

    Args:
        layout: the apartment.
        textures: ``(len(Material), S, S, 3)`` uint8 from :func:`~btnk_env.envs.textures.make_textures`.
    """
    try:
        import trimesh
    except ImportError as err:
        raise ImportError("exporting scenes needs trimesh: pip install trimesh (or pip install btnk-env[habitat])") from err
    from PIL import Image

    tris = scene_triangles(layout).reshape(-1, 3, VERTEX_FLOATS)  # (T, 3, F)
    keys = np.concatenate([tris[:, 0, 8:9], np.round(tris[:, 0, 9:12], 4), tris[:, 0, 12:13]], 1)  # layer, tint, emit
    groups, group_of = np.unique(keys, axis=0, return_inverse=True)
    images = {}
    scene = trimesh.Scene()
    for g, (layer, *tint, emit) in enumerate(groups):
        tri = tris[group_of.reshape(-1) == g].reshape(-1, VERTEX_FLOATS)  # (3 * T_g, F)
        layer, tint = int(layer), [float(v) for v in tint]
        if layer not in images:  # built-in texel row 0 sits at v = 0; trimesh puts image row 0 at v = 1
            images[layer] = Image.fromarray(np.ascontiguousarray(textures[layer][::-1]))
        name = f"{Material(layer).name.lower()}_{g}"
        material = trimesh.visual.material.PBRMaterial(
            name=name, baseColorTexture=images[layer], baseColorFactor=tint + [1.0],
            metallicFactor=0.0, roughnessFactor=1.0, emissiveFactor=tint if emit > 0.5 else None)
        mesh = trimesh.Trimesh(
            vertices=tri[:, 0:3].astype(np.float64) @ WORLD_TO_FILE.T,
            faces=np.arange(len(tri)).reshape(-1, 3),
            visual=trimesh.visual.TextureVisuals(uv=tri[:, 6:8], material=material),
            process=False)
        scene.add_geometry(mesh, geom_name=name)
    return scene


def export_scene(seed: int, out: str | os.PathLike, world: str = "apartment", overwrite: bool = False) -> Path:
    """Write the built-in apartment of ``seed`` (``world`` preset) to ``out`` as a ``.glb``.

    The file is written atomically (:func:`btnk_env.models.files.atomic_write_bytes`); an existing ``out``
    is never replaced unless ``overwrite``.

    Returns:
        the path written.
    """
    out = Path(out)
    if out.suffix.lower() != ".glb":
        raise ValueError(f"--out must end in .glb (Habitat reads .glb stages), got {str(out)!r}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {sorted(WORLDS)}, got {world!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder {out.parent} does not exist; create it first")
    layout = generate_layout(int(seed), **{k: WORLDS[world][k] for k in ("room_grid", "room_size", "max_furniture")})
    data = apartment_scene(layout, make_textures(int(seed))).export(file_type="glb")
    atomic_write_bytes(out, data)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env export-scene``."""
    parser.add_argument("--seed", type=int, required=True,
                        help="layout seed: the apartment of PanoramaRoomsEnv reset(seed=N)")
    parser.add_argument("--out", required=True, help="the .glb to write, e.g. apartment.glb")
    parser.add_argument("--world", default="apartment", choices=sorted(WORLDS), help="built-in world preset")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    """Run ``btnk-env export-scene``; returns the exit status."""
    try:
        out = export_scene(args.seed, args.out, world=args.world, overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as err:
        print(f"btnk-env export-scene: {err}")
        return 2
    print(f"wrote {out} ({args.world} seed {args.seed}; load it with HabitatPanoramaEnv({str(out)!r}))")
    return 0
