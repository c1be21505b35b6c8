"""Panorama collection: walk a panorama environment and write a finetuning dataset.

Two output formats (both described in :mod:`btnk_env.formats`): a PNG folder
(``dataset_config.json`` + ``manifest.jsonl`` + ``images/*.png``, what the original btnk_mae
loader reads) for small sets, and a webdataset shard set (``index.json`` + ``shard-*.tar``) for
large ones. ``--workers N`` renders in N spawned processes; ``--shard-index i --num-shards n`` (or
torchrun's / a scheduler's ``RANK`` and ``WORLD_SIZE``) makes this machine collect the shards
``k`` with ``k % n == i`` into a part index, merged by ``--merge-index``. Frame ``i`` is a function
of the settings and ``i`` only (:mod:`btnk_env.collection.parallel`): the files written are the same
for any number of workers, machines or interruptions.

Collection resumes: a second call with the same settings keeps every complete frame or shard and
writes the rest. A PNG is renamed into place before its manifest line is appended and fsynced; a
shard is renamed into place before the index that lists it is rewritten (atomically). A second
collector on the same output is refused (``fcntl.flock``).

Command line::

    btnk-env collect --out data/rooms --num-frames 500 --mode poses --seeds 0-99
    btnk-env collect --out data/rooms100k --format shards --num-frames 100000 --workers 8 --seeds 0-9999
    btnk-env collect --convert data/rooms --out data/rooms_shards        # folder <-> shards
    btnk-env collect --merge-index data/rooms100k                        # after a multi-machine collection
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from btnk_env import formats as F
from btnk_env.collection.parallel import Plan, Unit, factory_for, make_gym_env, run_units
from btnk_env.collection.seeds import SeedRanges, parse_seeds, resolve_parts
from btnk_env.models.files import clean_stale_temps, settings_diff

__all__ = ["collect_panoramas", "load_manifest", "parse_seeds", "add_arguments", "run"]

logger = logging.getLogger(__name__)

MODES = ("poses", "walk", "trajectory")
FORMATS = ("folder", "shards")
FOLDER_CHUNK = 64  # frames per unit of work in the PNG folder format
CONFIG_REFRESH = 1024  # frames between rewrites of dataset_config.json while collecting


def load_manifest(out_dir: str | os.PathLike) -> list[dict]:
    """The complete frames of a PNG folder, in index order: the manifest's intact records that have
    every collection key and their PNG. A damaged line or an incomplete record costs itself alone:
    it is skipped, every other one is kept, and one warning names and counts them
    (:meth:`btnk_env.formats.Manifest.report`).

    Returns:
        list of records ``{"index", "file" (relative to out_dir), "scene", "seed",
        "position" [x, y, z] metres, "heading" radians, "mode"}`` (plus ``episode``, ``step``).
    """
    root = Path(out_dir)
    manifest = F.scan_manifest(root)
    holes = set(_incomplete(root, manifest.records))
    manifest.report([f"frame {i} ({manifest.records[i]['file']}): no PNG or record keys" for i in sorted(holes)])
    return [r for i, r in manifest.records.items() if i not in holes]


def _incomplete(root: Path, records: dict[int, dict]) -> list[int]:
    """Frames of the manifest whose record lacks a collection key or whose PNG is missing."""
    return [i for i, rec in records.items()
            if not all(k in rec for k in F.RECORD_KEYS) or not (root / rec["file"]).is_file()]


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
    *,
    format: str = "folder",
    shard_size: int = 1000,
    workers: int = 1,
    shard_index: int | None = None,
    num_shards: int | None = None,
    scenes: Sequence[str] | None = None,
) -> Path:
    """Collect ``num_frames`` panoramas into ``out_dir`` (resuming what is already there).

    Args:
        env_or_id: a panorama environment (``PanoramaRoomsEnv``, ``HabitatPanoramaEnv`` or a
            wrapper of one), a Gymnasium id such as ``"btnk_env/PanoramaRooms-v0"`` (made with
            ``height`` and ``env_kwargs``), or a picklable zero-argument factory of an environment
            (``functools.partial(HabitatPanoramaEnv, scene=..., height=512)``). ``workers > 1``
            needs an id or a factory: each worker builds its own environment.
        out_dir: dataset folder, created if needed.
        num_frames: total frames wanted in the collection (default: the trajectory's length).
        mode: ``"poses"`` (random navigable poses), ``"walk"`` (random walks of
            ``frames_per_scene`` frames) or ``"trajectory"`` (the given poses).
        seeds: scene seeds (or ``"0-99"``), used in turn, ``frames_per_scene`` frames each; the
            built-in world makes apartment ``s`` from ``reset(seed=s)``.
        trajectory: for ``mode="trajectory"``: dicts with ``position`` ((x, z) or (x, y, z)),
            ``heading`` (radians) and optionally ``seed`` and ``scene``.
        height: panorama height when ``env_or_id`` is an id.
        frames_per_scene: frames taken in one scene before moving to the next seed.
        progress: show a tqdm progress bar.
        callback: called as ``callback(index, record)`` after each frame is stored (shards: after
            its shard is).
        format: ``"folder"`` (PNG files) or ``"shards"`` (webdataset tar shards).
        shard_size: frames per shard; shard ``k`` holds frames ``k*shard_size ..``.
        workers: rendering processes on this machine.
        shard_index, num_shards: collect only the shards ``k % num_shards == shard_index`` (default:
            ``RANK`` / ``WORLD_SIZE`` from the environment, else everything).
        scenes: scenes to visit (passed as ``reset(options={"scene": ...})``: Habitat scene files).

    Returns:
        the dataset folder.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
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
    if shard_size < 1 or workers < 1:
        raise ValueError(f"shard_size and workers must be >= 1, got {shard_size}, {workers}")
    seeds = parse_seeds(seeds) if isinstance(seeds, (str, SeedRanges)) else [int(s) for s in seeds]  # ranges stay compact
    if not seeds:
        raise ValueError("seeds must not be empty")
    part, parts = resolve_parts(shard_index, num_shards)
    if parts > 1 and format != "shards":
        raise ValueError("splitting a collection over machines (num_shards > 1) needs format='shards'")

    env, factory = None, None
    if isinstance(env_or_id, str):
        factory = factory_for(env_or_id, height, env_kwargs)
    elif callable(env_or_id) and not hasattr(env_or_id, "reset"):
        factory = env_or_id
    else:
        env = env_or_id
    if env is None and (workers == 1 or format == "folder" and num_frames <= FOLDER_CHUNK):
        env = factory()  # one process: build it here (and close it at the end)
        owns_env = True
    else:
        owns_env = False
    try:
        if env is not None:
            space = env.unwrapped.observation_space
            height = int(space["rgb"].shape[0] if hasattr(space, "spaces") else space.shape[0])
            env_name = type(env.unwrapped).__name__
            world = getattr(env.unwrapped, "world", None)
        else:
            env_name = _probe_env_name(factory)
            keywords = getattr(factory, "keywords", None) or {}
            height = int(keywords.get("height", height))  # functools.partial(PanoramaRoomsEnv, height=128)
            world = keywords.get("world", (env_kwargs or {}).get("world", _default_world(env_name)))
        plan = Plan(mode, seeds if isinstance(seeds, SeedRanges) else tuple(seeds), frames_per_scene, tuple(trajectory[:num_frames]) if trajectory else None,
                    tuple(str(s) for s in scenes) if scenes else None)
        settings = {"mode": mode, "seeds": seeds.to_json() if isinstance(seeds, SeedRanges) else seeds, "frames_per_scene": frames_per_scene, "height": height, "env": env_name}
        if world is not None:  # the built-in world's preset decides the pixels too
            settings["world"] = str(world)
        if mode == "trajectory":
            settings["trajectory_length"] = len(trajectory)
        if scenes:
            settings["scenes"] = list(plan.scenes)
        root = Path(out_dir)
        if format == "folder":
            return _collect_folder(root, plan, settings, num_frames, height, workers, env, factory, progress, callback)
        settings.update(format="shards", shard_size=shard_size, num_shards=parts)
        return _collect_shards(root, plan, settings, num_frames, height, shard_size, part, parts, workers, env, factory,
                               progress, callback)
    finally:
        if owns_env:
            env.close()


def _probe_env_name(factory: Callable[[], Any]) -> str:
    """The environment class a factory makes, without building it (for the stored settings)."""
    import functools

    if isinstance(factory, functools.partial) and factory.func is make_gym_env:
        import gymnasium as gym

        import btnk_env  # noqa: F401

        entry = gym.spec(factory.args[0]).entry_point
        return str(entry).rsplit(":", 1)[-1] if isinstance(entry, str) else getattr(entry, "__name__", str(entry))
    target = factory.func if isinstance(factory, functools.partial) else factory
    return getattr(target, "__name__", type(target).__name__)


def _default_world(env_name: str) -> "str | None":
    """The ``world`` a factory's environment gets when none is given (the built-in world's default)."""
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

    if env_name != PanoramaRoomsEnv.__name__:
        return None
    import inspect

    return inspect.signature(PanoramaRoomsEnv).parameters["world"].default


def _bar(total: int, initial: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=min(initial, total), disable=not progress, desc="panoramas", unit="frame",
                dynamic_ncols=True)


def _check_settings(old: dict | None, settings: dict, where: Path) -> None:
    if old is not None and old != settings:
        raise F.DatasetFormatError(f"{where} was collected with different settings ({settings_diff(old, settings)}); "
                                   "use another --out, or the same settings to resume")


def _collect_folder(root: Path, plan: Plan, settings: dict, num_frames: int, height: int, workers: int, env: Any,
                    factory: Any, progress: bool, callback: Any) -> Path:
    F.claim(root, F.FOLDER_KIND, settings)  # before any work: ours with these settings, or new
    (root / F.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    size = (height, 2 * height)
    with F.exclusive_lock(root):
        _check_settings((F.read_config(root) or {}).get("collection"), settings, root / F.CONFIG)
        scan = F.scan_manifest(root)
        clean_stale_temps(root / F.IMAGES_DIR, ".*.tmp*")
        records = scan.records
        end = max(records) + 1 if records else 0  # frames from here on are appended
        # frames to render again (a damaged line, no record, no PNG): every other record and PNG is kept
        holes = sorted(set(scan.missing(min(end, num_frames))) | set(_incomplete(root, records)))
        if records:
            logger.info("resuming %s at frame %d (%d damaged or missing frames before it re-rendered)", root, end,
                        len(holes))
        bar = _bar(num_frames, end - len(holes), progress)
        try:
            for _, recs in run_units([Unit(str(root), i, i + 1, size=size) for i in holes], plan, workers, env, factory,
                                     ordered=True):
                for rec in recs:
                    records[rec["index"]] = rec
                    bar.update(1)
            _rewrite_manifest(root, [records[i] for i in sorted(records)])
            F.write_config(root, size, len(records), False, settings)
            done = end
            units = [Unit(str(root), a, min(a + FOLDER_CHUNK, num_frames), size=size)
                     for a in range(done, num_frames, FOLDER_CHUNK)]
            with open(root / F.MANIFEST, "a", encoding="utf-8") as manifest:
                for _, recs in run_units(units, plan, workers, env, factory, ordered=True):
                    for rec in recs:
                        manifest.write(json.dumps(rec) + "\n")
                        manifest.flush()
                        os.fsync(manifest.fileno())
                        bar.update(1)
                        done += 1
                        if callback is not None:
                            callback(rec["index"], rec)
                    if done % CONFIG_REFRESH < len(recs):
                        F.write_config(root, size, done, False, settings)
        finally:
            bar.close()
            n = len(load_manifest(root))
            F.write_config(root, size, n, n >= num_frames, settings)
    return root


def _rewrite_manifest(root: Path, records: list[dict]) -> None:
    """Write the manifest's records again if they changed (a damaged or torn line dropped, re-rendered
    frames); an unchanged record keeps its bytes."""
    body = "".join(json.dumps(r) + "\n" for r in records)
    path = root / F.MANIFEST
    if not path.exists() or path.read_text(encoding="utf-8") != body:
        F.atomic_write_bytes(path, body.encode())


def _collect_shards(root: Path, plan: Plan, settings: dict, num_frames: int, height: int, shard_size: int, part: int,
                    parts: int, workers: int, env: Any, factory: Any, progress: bool, callback: Any) -> Path:
    from btnk_env.formats.shards import load_index_entries, remove_stale_temporaries

    F.claim(root, F.SHARDS_KIND, settings)  # every part of one set brings the same settings
    size = (height, 2 * height)
    index_name = F.part_index_name(part, parts)
    index_path = root / index_name
    settings = {**settings, "shard_index": part} if parts > 1 else settings
    with F.exclusive_lock(root, f".{index_name}.lock"):
        mine = [k for k in range(-(-num_frames // shard_size)) if k % parts == part]
        remove_stale_temporaries(root, [F.shard_name(k) for k in mine])  # another part's open shard is not ours to remove
        expected = {k: min(shard_size, num_frames - k * shard_size) for k in mine}
        kept = {e.first // shard_size: e for e in load_index_entries(index_path, settings, size)
                if e.first % shard_size == 0 and e.file == F.shard_name(e.first // shard_size)}
        entries = {k: e for k, e in kept.items() if k in expected and e.count == expected[k]}
        todo = [k for k in mine if k not in entries]
        done = sum(e.count for e in entries.values())
        if entries:
            logger.info("resuming %s: %d of %d shards complete", root, len(entries), len(mine))
        write = lambda complete: F.write_index(index_path, list(entries.values()), size, settings,  # noqa: E731
                                               complete=complete, num_frames=num_frames)
        write(False)
        units = [Unit(str(root), k * shard_size, k * shard_size + expected[k], shard=k, size=size) for k in todo]
        bar = _bar(sum(expected.values()), done, progress)
        try:
            for entry, recs in run_units(units, plan, workers, env, factory, ordered=False):
                entries[entry.first // shard_size] = entry
                write(False)
                bar.update(entry.count)
                if callback is not None:
                    for rec in recs:
                        callback(rec["index"], rec)
        finally:
            bar.close()
        write(True)
    return root


# -- command line -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env collect``."""
    parser.add_argument("--out", default=None, help="dataset folder (resumed if it exists)")
    parser.add_argument("--num-frames", type=int, default=None, help="total frames (default: trajectory length)")
    parser.add_argument("--mode", choices=MODES + ("episodes",), default="poses")
    parser.add_argument("--seeds", default="0", help="scene seeds, e.g. 0-99 or 1,5,9")
    parser.add_argument("--height", type=int, default=256, help="panorama height H (width 2H)")
    parser.add_argument("--frames-per-scene", type=int, default=10)
    parser.add_argument("--world", default="apartment", help="built-in world preset: apartment or single_room")
    parser.add_argument("--habitat-scene", nargs="+", default=None, metavar="SCENE",
                        help="collect in these Habitat scenes instead (needs habitat-sim)")
    parser.add_argument("--trajectory", default=None, help="JSON-lines file of {position, heading, seed} for --mode trajectory")
    parser.add_argument("--format", choices=FORMATS, default="folder",
                        help="folder: PNG files (small sets); shards: webdataset tar shards (large sets)")
    parser.add_argument("--shard-size", type=int, default=1000, help="frames per shard (--format shards; episodes: "
                        "--episodes-per-shard)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes on this machine")
    parser.add_argument("--shard-index", type=int, default=None, help="this machine's part (default: $RANK)")
    parser.add_argument("--num-shards", type=int, default=None, help="machines sharing the collection (default: $WORLD_SIZE)")
    parser.add_argument("--convert", default=None, metavar="SRC",
                        help="convert the PNG folder or shard set SRC into --out (the other format) instead of collecting")
    parser.add_argument("--merge-index", nargs="+", default=None, metavar="DIR",
                        help="merge the part indexes in DIR(s) into --out/index.json (default --out: the first DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from btnk_env.collection import episodes

    episodes.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``btnk-env collect``; returns the exit status. Input errors (bad seeds, an output that
    is a file, a read-only folder, a full disk, a locked or damaged dataset) become one line
    through :func:`btnk_env.models.errors.explain`."""
    import sys

    from btnk_env.models.errors import BtnkEnvError

    if args.merge_index:
        from btnk_env.formats.shards import merge_indexes

        path = merge_indexes(args.out or args.merge_index[0], args.merge_index)
        value = F.read_index(path)
        print(f"{path}: {value['num_samples']} samples in {value['num_shards']} shards")
        return 0
    if not args.out:
        print("btnk-env collect: --out is required", file=sys.stderr)
        return 2
    if args.convert:
        from btnk_env.collection.convert import convert

        out = convert(args.convert, args.out, shard_size=args.shard_size, progress=not args.no_progress)
        print(f"converted {args.convert} -> {out}")
        return 0
    trajectory = None
    if args.trajectory:
        with open(args.trajectory, encoding="utf-8") as fh:
            try:
                trajectory = [json.loads(line) for line in fh if line.strip()]
            except json.JSONDecodeError as err:
                raise BtnkEnvError(f"{args.trajectory} is not JSON lines ({err}); write one JSON object per line") from None
    if args.num_frames is None and trajectory is None and args.mode != "episodes":
        print("btnk-env collect: --num-frames is required unless --trajectory is given", file=sys.stderr)
        return 2
    seeds = parse_seeds(args.seeds)  # checked before any environment is built
    import functools

    scenes = None
    if args.habitat_scene:
        from btnk_env.envs.habitat import HabitatPanoramaEnv

        factory: Any = functools.partial(HabitatPanoramaEnv, scene=args.habitat_scene[0], height=args.height)
        scenes = args.habitat_scene if len(args.habitat_scene) > 1 else None
    else:
        from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

        factory = functools.partial(PanoramaRoomsEnv, height=args.height, world=args.world)
    if args.mode == "episodes":
        from btnk_env.collection import episodes

        env = factory()
        try:
            return episodes.run(args, env)
        finally:
            env.close()
    out = collect_panoramas(factory, args.out, args.num_frames, mode=args.mode, seeds=seeds,
                            trajectory=trajectory, frames_per_scene=args.frames_per_scene, height=args.height,
                            progress=not args.no_progress, format=args.format, shard_size=args.shard_size,
                            workers=args.workers, shard_index=args.shard_index, num_shards=args.num_shards,
                            scenes=scenes)
    if args.format == "folder":
        print(f"{len(load_manifest(out))} panoramas in {out}")
    else:
        part, parts = resolve_parts(args.shard_index, args.num_shards)
        value = F.read_index(out / F.part_index_name(part, parts))
        print(f"{value['num_samples']} panoramas in {value['num_shards']} shards in {out}"
              + (f" (part {part} of {parts}; merge with 'btnk-env collect --merge-index {out}')" if parts > 1 else ""))
    return 0
