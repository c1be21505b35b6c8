"""Panorama collection: walk a panorama environment and write a finetuning dataset.

Output folder::

    out_dir/
      dataset_config.json   {"dataset_type": "panorama", ...}  (read by the original btnk_mae loader)
      manifest.jsonl        one JSON line per frame: index, file, scene, seed, position, heading, mode
      images/000000.png ... (H, 2H) RGB equirectangular panoramas

Collection resumes: a second call with the same settings keeps every complete frame (its PNG
exists and its manifest line is whole), drops the rest and continues numbering. The pose of frame
``i`` is a function of ``(seed, i)`` only, so an interrupted-then-resumed collection writes exactly
the frames an uninterrupted one would. PNGs are written to a temporary file and renamed; the
manifest line is appended (and fsynced) only after its PNG is in place.

Command line: ``btnk-env collect --out data/rooms --num-frames 500 --mode poses --seeds 0-99``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = ["collect_panoramas", "load_manifest", "parse_seeds", "add_arguments", "run"]

logger = logging.getLogger(__name__)

MODES = ("poses", "walk", "trajectory")
MANIFEST = "manifest.jsonl"
CONFIG = "dataset_config.json"
_RECORD_KEYS = ("index", "file", "scene", "seed", "position", "heading", "mode")
WALK_ACTION_PROBS = (0.6, 0.2, 0.2)  # move_forward, turn_left, turn_right


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``.

    Example:
        >>> parse_seeds("0-3,7")
        [0, 1, 2, 3, 7]
    """
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if "-" in part[1:]:
            lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
            seeds += list(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


def _valid_record(rec: Any, index: int, root: Path) -> bool:
    return (isinstance(rec, dict) and all(k in rec for k in _RECORD_KEYS) and rec["index"] == index
            and (root / rec["file"]).is_file())


def load_manifest(out_dir: str | os.PathLike) -> list[dict]:
    """The complete frames of a dataset folder, in order.

    A frame counts if its manifest line is whole JSON with every key, its index follows the
    previous one, and its PNG exists; reading stops at the first frame that does not.

    Returns:
        list of records ``{"index", "file" (relative to out_dir), "scene", "seed",
        "position" [x, y, z] metres, "heading" radians, "mode"}``.
    """
    root = Path(out_dir)
    path = root / MANIFEST
    records: list[dict] = []
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if not line.endswith("\n") or not _valid_record(rec, len(records), root):
                break
            records.append(rec)
    return records


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # not *.png, so loaders globbing PNGs never see it
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_config(root: Path, height: int, num_images: int, settings: dict) -> None:
    config = {
        "dataset_type": "panorama",
        "image_format": "png",
        "image_size": [height, 2 * height],
        "projection": "equirectangular",
        "num_images": num_images,
        "images_dir": "images",
        "manifest": MANIFEST,
        "collection": settings,
    }
    _atomic_write_bytes(root / CONFIG, (json.dumps(config, indent=2) + "\n").encode())


class _Driver:
    """Puts the environment at the pose of frame ``i`` for each mode."""

    def __init__(self, env, mode, seeds, frames_per_scene, trajectory):
        self.env, self.mode, self.seeds, self.fps = env, mode, list(seeds), frames_per_scene
        self.trajectory = trajectory
        self._scene_seed: int | None = None
        self._walk: tuple[int, int, np.random.Generator] | None = None  # (segment start, last frame, rng)

    def _load(self, seed: int) -> None:
        if seed != self._scene_seed:
            self.env.reset(seed=seed)
            self._scene_seed = seed

    def frame(self, i: int) -> tuple[Any, int]:
        """Observation and seed of frame ``i``."""
        if self.mode == "trajectory":
            step = self.trajectory[i]
            seed = int(step.get("seed", self.seeds[0]))
            self._load(seed)
            return self.env.set_pose(step["position"], float(step["heading"])), seed
        start = (i // self.fps) * self.fps
        seed = self.seeds[(i // self.fps) % len(self.seeds)]
        self._load(seed)
        if self.mode == "poses":
            position, heading = self.env.sample_navigable_pose(np.random.default_rng([seed, i]))
            return self.env.set_pose(position, heading), seed
        # walk: each segment of frames_per_scene frames starts at a random pose and takes random
        # actions; resuming mid-segment replays the segment from its start
        if self._walk is None or self._walk[0] != start or self._walk[1] != i - 1:
            rng = np.random.default_rng([seed, start])
            position, heading = self.env.sample_navigable_pose(rng)
            obs = self.env.set_pose(position, heading)
            self._walk = (start, start, rng)
            for _ in range(start + 1, i + 1):
                obs = self._walk_step()
            return obs, seed
        return self._walk_step(), seed

    def _walk_step(self):
        start, last, rng = self._walk
        obs = self.env.step(int(rng.choice(3, p=WALK_ACTION_PROBS)))[0]
        self._walk = (start, last + 1, rng)
        return obs


def collect_panoramas(
    env_or_id: Any,
    out_dir: str | os.PathLike,
    num_frames: int | None = None,
    mode: str = "poses",
    seeds: Iterable[int] | str = (0,),
    trajectory: Sequence[dict] | None = None,
    height: int = 256,
    frames_per_scene: int = 10,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    env_kwargs: dict | None = None,
) -> Path:
    """Collect ``num_frames`` panoramas into ``out_dir`` (resuming what is already there).

    Args:
        env_or_id: a panorama environment (``PanoramaRoomsEnv``, ``HabitatPanoramaEnv`` or a
            wrapper of one) or a Gymnasium id such as ``"btnk_env/PanoramaRooms-v0"``, made
            with ``height`` and ``env_kwargs`` (and closed at the end).
        out_dir: dataset folder, created if needed.
        num_frames: total frames wanted in the folder (default: the trajectory's length).
        mode: ``"poses"`` (random navigable poses), ``"walk"`` (random walks of
            ``frames_per_scene`` frames) or ``"trajectory"`` (the given poses).
        seeds: scene seeds (or ``"0-99"``), used in turn, ``frames_per_scene`` frames each; the
            built-in world makes apartment ``s`` from ``reset(seed=s)``.
        trajectory: for ``mode="trajectory"``: dicts with ``position`` ((x, z) or (x, y, z)),
            ``heading`` (radians) and optionally ``seed``.
        height: panorama height when ``env_or_id`` is an id.
        frames_per_scene: frames taken in one scene before moving to the next seed.
        progress: show a tqdm progress bar.
        callback: called as ``callback(index, record)`` after each frame is stored.

    Returns:
        the dataset folder.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "trajectory":
        if not trajectory:
            raise ValueError("mode='trajectory' needs a non-empty trajectory")
        num_frames = len(trajectory) if num_frames is None else num_frames
        if num_frames > len(trajectory):
            raise ValueError(f"num_frames={num_frames} exceeds the trajectory's {len(trajectory)} poses")
    if num_frames is None or num_frames < 0:
        raise ValueError(f"num_frames must be a non-negative integer, got {num_frames}")
    if frames_per_scene < 1:
        raise ValueError(f"frames_per_scene must be >= 1, got {frames_per_scene}")
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")

    owns_env = isinstance(env_or_id, str)
    if owns_env:
        import gymnasium as gym

        import btnk_env  # noqa: F401  (registers the built-in environments)

        env_or_id = gym.make(env_or_id, height=height, **(env_kwargs or {}))
    env = env_or_id.unwrapped
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    height = int(env.observation_space["rgb"].shape[0] if hasattr(env.observation_space, "spaces")
                 else env.observation_space.shape[0])
    settings = {"mode": mode, "seeds": seeds, "frames_per_scene": frames_per_scene,
                "height": height, "env": type(env).__name__}
    if mode == "trajectory":
        settings["trajectory_length"] = len(trajectory)
    config_path = root / CONFIG
    if config_path.exists():
        old = json.loads(config_path.read_text()).get("collection")
        if old is not None and old != settings:
            raise ValueError(f"{root} was collected with different settings {old}; now {settings}. "
                             "Use another folder or the same settings to resume.")
    records = load_manifest(root)
    _rewrite_manifest(root, records)
    for stale in (root / "images").glob(".*.tmp"):
        stale.unlink()
    _write_config(root, height, len(records), settings)
    if records:
        logger.info("resuming %s at frame %d", root, len(records))

    from tqdm.auto import tqdm

    driver = _Driver(env, mode, seeds, frames_per_scene, trajectory)
    bar = tqdm(total=num_frames, initial=min(len(records), num_frames), disable=not progress,
               desc="panoramas", unit="frame")
    try:
        with open(root / MANIFEST, "a", encoding="utf-8") as manifest:
            for i in range(len(records), num_frames):
                obs, seed = driver.frame(i)
                rgb = obs["rgb"] if isinstance(obs, dict) else obs
                name = f"images/{i:06d}.png"
                _atomic_write_bytes(root / name, _png_bytes(np.asarray(rgb, dtype=np.uint8)))
                position, heading = env.get_pose()
                rec = {"index": i, "file": name, "scene": env.scene_id, "seed": seed,
                       "position": [float(v) for v in position], "heading": float(heading), "mode": mode}
                manifest.write(json.dumps(rec) + "\n")
                manifest.flush()
                os.fsync(manifest.fileno())
                bar.update(1)
                if callback is not None:
                    callback(i, rec)
    finally:
        bar.close()
        _write_config(root, height, len(load_manifest(root)), settings)
        if owns_env:
            env_or_id.close()
    return root


def _rewrite_manifest(root: Path, records: list[dict]) -> None:
    """Keep only the complete frames in the manifest (drops a torn last line)."""
    body = "".join(json.dumps(r) + "\n" for r in records)
    path = root / MANIFEST
    if not path.exists() or path.read_text(encoding="utf-8") != body:
        _atomic_write_bytes(path, body.encode())


# -- command line -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env collect``."""
    parser.add_argument("--out", required=True, help="dataset folder (resumed if it exists)")
    parser.add_argument("--num-frames", type=int, default=None, help="total frames (default: trajectory length)")
    parser.add_argument("--mode", choices=MODES + ("episodes",), default="poses")
    parser.add_argument("--seeds", default="0", help="scene seeds, e.g. 0-99 or 1,5,9")
    parser.add_argument("--height", type=int, default=256, help="panorama height H (width 2H)")
    parser.add_argument("--frames-per-scene", type=int, default=10)
    parser.add_argument("--world", default="apartment", help="built-in world preset: apartment or single_room")
    parser.add_argument("--habitat-scene", default=None, help="collect in this Habitat scene instead (needs habitat-sim)")
    parser.add_argument("--trajectory", default=None, help="JSON-lines file of {position, heading, seed} for --mode trajectory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from btnk_env.collection import episodes

    episodes.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``btnk-env collect``; returns the exit status."""
    trajectory = None
    if args.trajectory:
        with open(args.trajectory, encoding="utf-8") as fh:
            trajectory = [json.loads(line) for line in fh if line.strip()]
    if args.num_frames is None and trajectory is None and args.mode != "episodes":
        print("btnk-env collect: --num-frames is required unless --trajectory is given")
        return 2
    if args.habitat_scene:
        from btnk_env.envs.habitat import HabitatPanoramaEnv

        env: Any = HabitatPanoramaEnv(scene=args.habitat_scene, height=args.height)
    else:
        from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

        env = PanoramaRoomsEnv(height=args.height, world=args.world)
    try:
        if args.mode == "episodes":
            from btnk_env.collection import episodes

            return episodes.run(args, env)
        out = collect_panoramas(env, args.out, args.num_frames, mode=args.mode, seeds=args.seeds,
                                trajectory=trajectory, frames_per_scene=args.frames_per_scene,
                                progress=not args.no_progress)
    finally:
        env.close()
    print(f"{len(load_manifest(out))} panoramas in {out}")
    return 0
